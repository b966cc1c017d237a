"""Leaves the interpreter while an upload (with a Python progress callback), a call and a
reverse call (answered by a Python handler) are in flight on an asyncio loop that is neither
running nor closed.

Usage: exit_in_flight.py ADDRESS CERT_PEM_PATH WORKDIR, with the package `school_app` on
PYTHONPATH. The script ends by falling off its end, as a careless script would: no
`loop.close()`, no `os._exit`. The process must then exit with status 0, whatever the library's
runtime threads are doing at that moment.
"""

import asyncio
import os
import sys

from school_app import fluxon, school as school_module
from school_app.fluxon import FluxonClient, StorageOp, TransferProgress, Trust
from school_app.school import (
    BroadcastRequest,
    GrantRequest,
    NoticeAck,
    Role,
    SchoolClient,
    SchoolEventsHandler,
    SignupRequest,
    SlowRequest,
    school_events_service,
)


class Events(SchoolEventsHandler):
    """Answers reverse calls, slowly."""

    def __init__(self):
        self.started = 0

    async def notify(self, request):
        self.started += 1
        await asyncio.sleep(20)
        return NoticeAck(reply="too late")


class Progress(TransferProgress):
    def __init__(self):
        self.reports = 0

    def on_progress(self, done, total):
        self.reports += 1


address, cert, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
fluxon.uniffi_set_event_loop(loop)
school_module.uniffi_set_event_loop(loop)


events = Events()


async def start():
    client = await FluxonClient.connect(address, Trust.CERTIFICATE_FILE(path=cert), None,
                                        [school_events_service(events)])
    school = SchoolClient(client)
    name = f"exit{os.getpid()}"
    signup = await school.signup(SignupRequest(username=name, password="pw", role=Role.STUDENT))
    storage = client.storage()
    folder = f"u{signup.user_id}"

    def grant(op, path):
        return school.storage_grant(GrantRequest(op=op, path=path, dest_path="", max_bytes=None,
                                                 resumable=False, upload_id=""))

    mkdir = await grant(StorageOp.CREATE_DIRECTORY, "")
    await storage.create_directory(mkdir.grant, folder)
    up = await grant(StorageOp.WRITE_FILE, "big.bin")
    return client, school, storage, up.grant, folder


client, school, storage, grant, folder = loop.run_until_complete(start())

# A sparse 4 GiB file: far more than can move before the script ends, and no disk used here.
source = os.path.join(workdir, f"big-{os.getpid()}.bin")
with open(source, "wb") as f:
    f.truncate(4 << 30)

progress = Progress()
upload = loop.create_task(storage.upload_file(grant, f"{folder}/big.bin", source, progress))
call = loop.create_task(school.slow(SlowRequest(millis=20_000, text="never answered")))
# The server calls back into `events` and waits for the answer.
broadcast = loop.create_task(school.broadcast(BroadcastRequest(text="at exit")))
loop.run_until_complete(asyncio.sleep(0.3))
assert not upload.done(), "the upload finished before the script ended"
assert not call.done(), "the slow call finished before the script ended"
assert not broadcast.done(), "the broadcast finished before the script ended"
assert events.started == 1, "the reverse call did not reach the handler"
assert progress.reports > 0, "no progress reported"
print(f"leaving with the upload in flight after {progress.reports} progress reports", flush=True)
# The end of the script: the loop is neither closed nor running, both tasks are pending.
