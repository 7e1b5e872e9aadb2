"""OpenRouter's official Python SDK (`pip install openrouter==1.3.84`), unchanged but for its
server URL, against a live Seedgate server's OpenRouter-compatible surface.

    openrouter_sdk.py submit        lists the models, submits a text-to-video job and an
                                    image-to-video one, sees a refusal as the SDK's own error;
                                    prints the two job ids
    openrouter_sdk.py fetch ID OUT  polls the job until it ends, checks its bill, downloads its
                                    video to OUT; prints the cost

SEEDGATE_OPENROUTER_URL is the server's `…/api/v1`, SEEDGATE_API_KEY the key.
"""

import base64
import os
import sys
import time
import zlib

from openrouter import OpenRouter, errors, utils

MODEL = "bytedance/seedance-2.0-fast"


def client():
    # No retries: a 5xx is a failure of the server under test, not a blip to sit out.
    return OpenRouter(
        api_key=os.environ["SEEDGATE_API_KEY"],
        server_url=os.environ["SEEDGATE_OPENROUTER_URL"],
        retry_config=utils.RetryConfig("backoff", utils.BackoffStrategy(1, 2, 1.1, 3), False),
    )


def png(width, height):
    """A plain grey PNG, as a data: URI."""
    row = b"\x00" + b"\x80\x80\x80" * width
    raw = zlib.compress(row * height)

    def chunk(kind, data):
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
    return "data:image/png;base64," + base64.b64encode(data).decode()


def submit():
    with client() as sdk:
        models = {m.id: m for m in sdk.video_generation.list_videos_models().data}
        fast = models[MODEL]
        assert "480p" in fast.supported_resolutions, fast
        assert 4 in fast.supported_durations, fast
        assert "first_frame" in fast.supported_frame_images, fast
        assert fast.pricing_skus, fast

        job = sdk.video_generation.generate(
            model=MODEL, prompt="a paper kite over a windy beach", duration=4,
            resolution="480p", aspect_ratio="16:9", generate_audio=False, seed=7,
        )
        assert job.status == "pending", job
        assert job.polling_url.endswith(f"/api/v1/videos/{job.id}"), job
        polled = sdk.video_generation.get_generation(job_id=job.id)
        assert polled.status == "pending", polled

        framed = sdk.video_generation.generate(
            model=MODEL, prompt="the kite takes off", duration=4, resolution="480p",
            frame_images=[{"type": "image_url", "image_url": {"url": png(640, 360)},
                           "frame_type": "first_frame"}],
            provider={"options": {"byteplus": {"watermark": False}, "google-vertex": {"x": 1}}},
        )

        try:
            sdk.video_generation.generate(model=MODEL, prompt="too big", resolution="4K")
            raise AssertionError("a resolution the model lacks was accepted")
        except errors.BadRequestResponseError as refused:
            assert refused.data.error.code == 400, refused.data
            assert refused.data.error.metadata["seedgate_code"] == "unsupported_resolution", refused.data
        try:
            sdk.video_generation.get_video_content(job_id=job.id)
            raise AssertionError("an unfinished job's video was served")
        except errors.OpenRouterError as refused:
            assert refused.status_code == 409, refused
        print(job.id, framed.id)


def fetch(job_id, out):
    with client() as sdk:
        deadline = time.monotonic() + 120
        while True:
            job = sdk.video_generation.get_generation(job_id=job_id)
            if job.status in ("completed", "failed", "cancelled", "expired"):
                break
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job.status == "completed", job
        assert job.usage.cost > 0 and job.usage.is_byok is False, job
        assert job.unsigned_urls[0].endswith(f"/api/v1/videos/{job_id}/content?index=0"), job
        video = sdk.video_generation.get_video_content(job_id=job_id, index=0)
        with open(out, "wb") as file:
            file.write(video.read())
        print(job.usage.cost)


if __name__ == "__main__":
    if sys.argv[1] == "submit":
        submit()
    else:
        fetch(sys.argv[2], sys.argv[3])
