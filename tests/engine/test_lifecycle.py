"""Where `engine up` says the pools answer: the OpenAI base URL and the host that follows RAY_ADDRESS."""

from __future__ import annotations

import pytest

from engine.lifecycle import openai_base, serve_host


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/"])
def test_openai_base_accepts_a_server_or_its_api_url(url: str) -> None:
    assert openai_base(url) == "http://h:8000/v1"


@pytest.mark.parametrize(
    ("address", "host"),
    [
        ("", "127.0.0.1"),
        ("auto", "127.0.0.1"),
        ("ray://head.example:10001", "head.example"),
        ("10.1.2.3:6379", "10.1.2.3"),
    ],
)
def test_serve_host_follows_ray_address(address: str, host: str) -> None:
    assert serve_host(address, "127.0.0.1") == host
