"""Ark's official Python SDK (volcenginesdkarkruntime) against a live Seedgate, unchanged but
for its base URL. Phase `queued` runs while no task can start; phase `done` after they ran.

Usage: ark_sdk.py queued | done <task id> <draft id>; SEEDGATE_ARK_BASE_URL and SEEDGATE_API_KEY
set. `queued` prints the two ids `done` takes; `done` prints the id of the draft's final.
"""

import os
import sys

from volcenginesdkarkruntime import Ark
from volcenginesdkarkruntime._exceptions import ArkBadRequestError, ArkNotFoundError

client = Ark(base_url=os.environ["SEEDGATE_ARK_BASE_URL"], api_key=os.environ["SEEDGATE_API_KEY"])
tasks = client.content_generation.tasks
MODEL = "doubao-seedance-2-0-fast-260128"
LATEST = "doubao-seedance-2-5-260628"


def create(prompt, **extra):
    request = dict(
        model=MODEL,
        content=[{"type": "text", "text": prompt}],
        ratio="16:9",
        duration=4,
        resolution="480p",
        generate_audio=False,
        seed=11,
    )
    request.update(extra)
    return tasks.create(**request)


def queued():
    withdrawn = create("a paper boat, withdrawn")
    assert withdrawn.id.startswith("cgt-"), withdrawn
    assert tasks.get(task_id=withdrawn.id).status == "queued"
    tasks.delete(withdrawn.id)
    assert tasks.get(task_id=withdrawn.id).status == "cancelled"

    kept = create("a paper boat on a pond")
    listed = tasks.list(page_num=1, page_size=10, task_ids=[withdrawn.id, kept.id])
    assert listed.total == 2, listed
    assert [t.id for t in listed.items] == [kept.id, withdrawn.id], listed
    assert tasks.list(status="queued").total == 1

    # Refusals surface as the SDK's own errors, carrying Ark's codes, with ours beside them.
    try:
        create("too sharp for the fast model", resolution="1080p")
        raise AssertionError("1080p on the fast model was accepted")
    except ArkBadRequestError as e:
        assert e.status_code == 400 and e.code == "InvalidParameter", (e.code, e.body)
        assert e.param == "resolution" and e.body["seedgate_code"] == "unsupported_resolution", e.body
    # Seedance 2.5 by its Ark id: 30 s, and `-1`; a first frame only at the adaptive ratio,
    # refused as the upstream would refuse it, before it is sent anywhere.
    latest = create("a paper boat at sea for half a minute", model=LATEST,
                    duration=30)
    assert tasks.get(task_id=latest.id).duration == 30
    tasks.delete(latest.id)
    chosen = create("a paper boat, as long as it takes", model=LATEST,
                    duration=-1)
    tasks.delete(chosen.id)
    try:
        create("a paper boat from a photo", model=LATEST,
               content=[{"type": "text", "text": "a paper boat from a photo"},
                        {"type": "image_url", "role": "first_frame",
                         "image_url": {"url": "https://example.com/boat.png"}}])
        raise AssertionError("a 2.5 first frame at 16:9 was accepted")
    except ArkBadRequestError as e:
        assert e.status_code == 400 and e.code == "InvalidParameter", (e.code, e.body)
        assert e.param == "ratio" and e.body["seedgate_code"] == "invalid_aspect_ratio", e.body
    try:
        tasks.get(task_id="cgt-01ARZ3NDEKTSV4RRFFQ69G5FAV")
        raise AssertionError("an unknown task was found")
    except ArkNotFoundError as e:
        assert e.code == "ResourceNotFound", (e.code, e.body)
        assert e.body["seedgate_code"] == "async_task_not_found", e.body
    # A 2.5 draft, which `done` renders as a final.
    draft = create("a paper boat, a first look", model=LATEST, draft=True, resolution=None)
    assert tasks.get(task_id=draft.id).resolution == "480p"
    print(kept.id, draft.id)


def done(task_id, draft_id):
    task = tasks.get(task_id=task_id)
    assert task.status == "succeeded", task
    assert task.content.video_url.startswith("http"), task
    assert task.usage.completion_tokens == 864 * 496 * 97 // 1024, task.usage
    assert task.resolution == "480p" and task.ratio == "16:9" and task.duration == 4, task
    # A finished task is not deleted (it carries its bill); the call succeeds as on Ark.
    tasks.delete(task_id)
    assert tasks.get(task_id=task_id).status == "succeeded"

    # The final names its draft in a `draft_task` item and takes the rest from it.
    assert tasks.get(task_id=draft_id).status == "succeeded"
    final = tasks.create(model=LATEST, resolution="720p",
                         content=[{"type": "draft_task", "draft_task": {"id": draft_id}}])
    made = tasks.get(task_id=final.id)
    assert made.resolution == "720p" and made.ratio == "16:9" and made.duration == 4, made
    assert made.seed == tasks.get(task_id=draft_id).seed, made
    try:
        tasks.create(model=MODEL, resolution="720p",
                     content=[{"type": "draft_task", "draft_task": {"id": draft_id}}])
        raise AssertionError("a 2.0 final of a 2.5 draft was accepted")
    except ArkBadRequestError as e:
        assert e.status_code == 400 and e.body["seedgate_code"] == "unsupported_parameter", e.body
    print(final.id)


if __name__ == "__main__":
    if sys.argv[1] == "queued":
        queued()
    else:
        done(sys.argv[2], sys.argv[3])
