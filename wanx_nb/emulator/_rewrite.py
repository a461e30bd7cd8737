"""A deterministic stand-in for the service's prompt rewriting (`prompt_extend`)."""

from __future__ import annotations

import hashlib
import re

__all__ = ["extend_prompt"]

_CJK_RE = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

_ZH_DETAILS = (
    "画面细节丰富，质感细腻",
    "色彩鲜艳，层次分明",
    "光线柔和，营造出温馨宁静的氛围",
    "背景略微虚化，突出主体",
    "整体色调温暖而和谐",
    "构图均衡，主体清晰突出",
    "氛围梦幻，富有故事感",
    "远处景物若隐若现，空间感强",
)
_ZH_STYLES = ("高清写实摄影", "电影级光照", "精致插画风格", "自然光影效果")
_ZH_SHOTS = ("近景特写构图", "中景构图", "远景全景构图", "低角度仰拍视角")
_EN_DETAILS = (
    "rich fine detail and delicate textures",
    "vivid colours with clear layering",
    "soft light creating a warm, calm atmosphere",
    "a gently blurred background that makes the subject stand out",
    "a warm, harmonious colour palette",
    "a balanced composition with a clear focal point",
    "a dreamy, story-like mood",
    "distant scenery fading into the haze for a sense of depth",
)
_EN_STYLES = (
    "high-definition realistic photography",
    "cinematic lighting",
    "refined illustration style",
    "natural light and shadow",
)
_EN_SHOTS = ("close-up shot", "medium shot", "wide panoramic shot", "low-angle shot")


def extend_prompt(prompt: str) -> str:
    """A deterministic stand-in for the service's LLM rewrite: the prompt plus picked phrases."""
    h = int.from_bytes(hashlib.sha256(prompt.encode()).digest()[:8], "big")
    if _CJK_RE.search(prompt):
        details, styles, shots = _ZH_DETAILS, _ZH_STYLES, _ZH_SHOTS
        i = h % len(details)
        d1, d2 = details[i], details[(i + 1 + h // 8 % (len(details) - 1)) % len(details)]
        core = prompt.strip().rstrip("。.！!，,")
        return f"{core}。{d1}，{d2}。{styles[h // 64 % len(styles)]}，{shots[h // 256 % len(shots)]}。"
    details, styles, shots = _EN_DETAILS, _EN_STYLES, _EN_SHOTS
    i = h % len(details)
    d1, d2 = details[i], details[(i + 1 + h // 8 % (len(details) - 1)) % len(details)]
    core = prompt.strip().rstrip(".!,;")
    return f"{core}, with {d1} and {d2}. {styles[h // 64 % len(styles)].capitalize()}, {shots[h // 256 % len(shots)]}."
