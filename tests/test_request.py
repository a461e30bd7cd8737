from wanx_nb._request import GenerationRequest


def test_seed_of_each_image_is_seed_plus_i():
    assert GenerationRequest("fox", n=3, seed=10).seeds == (10, 11, 12)
    assert GenerationRequest("fox", model="wanx-v1").seeds == (None,) * 4  # server default n=4


def test_body_sends_only_given_fields_and_ref_img():
    body = GenerationRequest("fox", model="wanx-v1", ref_img="oss://k/a.png", style="<anime>", n=1).to_body()
    assert body == {
        "model": "wanx-v1",
        "input": {"prompt": "fox", "ref_img": "oss://k/a.png"},
        "parameters": {"style": "<anime>", "n": 1},
    }
    assert GenerationRequest("fox").to_body()["parameters"] == {}  # always present, like the SDK


def test_body_normalises_size_and_uses_the_wire_model():
    body = GenerationRequest("fox", size="1024x768").to_body("wan2.1-t2i-turbo")
    assert body["parameters"]["size"] == "1024*768"
    assert body["model"] == "wan2.1-t2i-turbo"


def test_canonical_fills_server_defaults_so_equal_requests_share_a_key():
    a = GenerationRequest("fox", seed=1)
    b = GenerationRequest("fox", seed=1, n=4, size="1024*1024", prompt_extend=True, watermark=False)
    assert a.canonical() == b.canonical()
    assert a.key() == b.key()
    assert a.key() != GenerationRequest("fox", seed=2).key()


def test_dict_round_trip():
    r = GenerationRequest("fox", model="wanx-v1", n=2, style="<sketch>")
    assert GenerationRequest.from_dict(r.to_dict()) == r
