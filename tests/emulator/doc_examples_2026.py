"""The request/response pairs of the 2026 spec's Appendix A, transcribed: each request as the docs send it,
and the key sets of the documented answer (values are the docs' own, ids masked there)."""

DOC_EXAMPLES: dict[str, dict] = {
    "A1_recorded_qwen_image_max_sync": {
        "path": "/api/v1/services/aigc/multimodal-generation/generation",
        "async": False,
        "body": {
            "model": "qwen-image-max",
            "input": {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "text": "冬日北京的都市街景，青灰瓦顶、朱红色外墙的两间相邻中式商铺比肩而立，檐下悬挂印有剪纸马的暖光灯笼，在阴天漫射光中投下柔和光晕，映照湿润鹅卵石路面泛起细腻反光。"
                            }
                        ],
                    }
                ]
            },
            "parameters": {
                "negative_prompt": "低分辨率，低画质，肢体畸形，手指畸形，画面过饱和，蜡像感，人脸无细节，过度光滑，画面具有AI感。构图混乱。文字模糊，扭曲。",
                "n": 1,
                "prompt_extend": True,
                "watermark": False,
                "size": "1664*928",
                "seed": 233,
            },
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": ["choices", "task_metric"],
            "usage": ["height", "image_count", "width"],
            "message": ["content", "role"],
            "content": [["image"]],
        },
    },
    "A2_doc_wan26_t2i_sync": {
        "path": "/api/v1/services/aigc/multimodal-generation/generation",
        "async": False,
        "body": {
            "model": "wan2.6-t2i",
            "input": {
                "messages": [
                    {"role": "user", "content": [{"text": "一间有着精致窗户的花店，漂亮的木质门，摆放着花朵"}]}
                ]
            },
            "parameters": {
                "prompt_extend": True,
                "watermark": False,
                "n": 1,
                "negative_prompt": "",
                "size": "1280*1280",
            },
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": ["choices", "finished"],
            "usage": ["image_count", "input_tokens", "output_tokens", "size", "total_tokens"],
            "message": ["content", "role"],
            "content": [["image", "type"]],
        },
    },
    "A3_doc_wan26_t2i_async": {
        "path": "/api/v1/services/aigc/image-generation/generation",
        "async": True,
        "body": {
            "model": "wan2.6-t2i",
            "input": {
                "messages": [
                    {"role": "user", "content": [{"text": "一间有着精致窗户的花店，漂亮的木质门，摆放着花朵"}]}
                ]
            },
            "parameters": {
                "prompt_extend": True,
                "watermark": False,
                "n": 1,
                "negative_prompt": "",
                "size": "1280*1280",
            },
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": ["choices", "end_time", "finished", "scheduled_time", "submit_time", "task_id", "task_status"],
            "usage": ["image_count", "input_tokens", "output_tokens", "size", "total_tokens"],
            "message": ["content", "role"],
            "content": [["image", "type"]],
        },
    },
    "A4_doc_qwen_image_30_pro_async": {
        "path": "/api/v1/services/aigc/image-generation/generation",
        "async": True,
        "body": {
            "model": "qwen-image-3.0-pro",
            "input": {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "text": "A healing-style hand-drawn poster featuring three puppies playing with a ball on lush green grass."
                            }
                        ],
                    }
                ]
            },
            "parameters": {"prompt_extend": True},
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": [
                "choices",
                "end_time",
                "rewrite_status",
                "scheduled_time",
                "submit_time",
                "task_id",
                "task_status",
            ],
            "usage": [
                "input_image_count",
                "input_image_type",
                "output_height",
                "output_image_count",
                "output_image_type",
                "output_width",
            ],
            "message": ["content", "role"],
            "content": [["image", "type"]],
        },
    },
    "A5_doc_z_image_turbo_sync": {
        "path": "/api/v1/services/aigc/multimodal-generation/generation",
        "async": False,
        "body": {
            "model": "z-image-turbo",
            "input": {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "text": "A sitting orange cat with a happy expression, lively and cute, realistic and accurate"
                            }
                        ],
                    }
                ]
            },
            "parameters": {"prompt_extend": False, "size": "1024*1024"},
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": ["choices"],
            "usage": ["height", "image_count", "input_tokens", "output_tokens", "total_tokens", "width"],
            "message": ["content", "reasoning_content", "role"],
            "content": [["image"], ["text"]],
        },
    },
    "A6_doc_wan27_image_pro_sync": {
        "path": "/api/v1/services/aigc/multimodal-generation/generation",
        "async": False,
        "body": {
            "model": "wan2.7-image-pro",
            "input": {
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {
                                "text": "A serene mountain lake at sunrise, with mist rising from the water, surrounded by pine trees, photorealistic"
                            }
                        ],
                    }
                ]
            },
            "parameters": {"n": 1, "size": "2K", "watermark": False, "thinking_mode": True},
        },
        "shape": {
            "top": ["output", "request_id", "usage"],
            "output": ["choices", "finished"],
            "usage": ["image_count", "input_tokens", "output_tokens", "size", "total_tokens"],
            "message": ["content", "role"],
            "content": [["image", "type"]],
        },
    },
    "A9_doc_qwen_image_plus_legacy_async": {
        "path": "/api/v1/services/aigc/text2image/image-synthesis",
        "async": True,
        "body": {
            "model": "qwen-image-plus",
            "input": {"prompt": "一副典雅庄重的对联悬挂于厅堂之中，…"},
            "parameters": {
                "negative_prompt": " ",
                "size": "1664*928",
                "n": 1,
                "prompt_extend": True,
                "watermark": False,
            },
        },
    },
}
