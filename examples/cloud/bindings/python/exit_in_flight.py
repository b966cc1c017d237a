"""Leaves the interpreter while an upload with a Python progress callback is in flight on an
asyncio loop that is neither running nor closed, as a careless script would.

Usage: exit_in_flight.py ADDRESS CERT_PEM_PATH WORKDIR, with the package `cloud_app` on
PYTHONPATH. The process must exit with status 0; the server must record nothing of the upload.
"""

import asyncio
import os
import sys

from cloud_app import fluxon, cloud as cloud_module
from cloud_app.fluxon import FluxonClient, TransferProgress, Trust
from cloud_app.cloud import CloudClient, CreateOwnerRequest, Credentials, WriteFileRequest


class Progress(TransferProgress):
    def __init__(self):
        self.reports = 0

    def on_progress(self, done, total):
        self.reports += 1


address, cert, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
fluxon.uniffi_set_event_loop(loop)
cloud_module.uniffi_set_event_loop(loop)


async def start():
    client = await FluxonClient.connect(address, Trust.CERTIFICATE_FILE(path=cert), None, [])
    cloud = CloudClient(client)
    await cloud.signup(Credentials(username=f"exit{os.getpid()}", password="a long password"))
    owner = await cloud.create_owner(CreateOwnerRequest())
    storage = client.storage()
    await storage.create_directory(owner.grant, owner.storage_path)
    grant = await cloud.write_file(WriteFileRequest(root=owner.root, path="big.bin", size=900 << 20))
    return client, storage, grant


client, storage, grant = loop.run_until_complete(start())

# A sparse 900 MiB file: far more than can move before the script ends, and no disk used here.
source = os.path.join(workdir, f"big-{os.getpid()}.bin")
with open(source, "wb") as f:
    f.truncate(900 << 20)

progress = Progress()
upload = loop.create_task(storage.upload_file(grant.grant, grant.storage_path, source, progress, False))
loop.run_until_complete(asyncio.sleep(0.3))
assert not upload.done(), "the upload finished before the script ended"
assert progress.reports > 0, "no progress reported"
print(f"leaving with the upload in flight after {progress.reports} progress reports", flush=True)
# The end of the script: the loop is neither closed nor running, the upload is pending.
