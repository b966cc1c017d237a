"""The cloud example's whole flow in Python, against a live cloud server.

Usage: cloud_flow.py ADDRESS CERT_PEM_PATH WORKDIR, with the package `cloud_app` (the generated
fluxon.py and cloud.py, libcloud_bindings.so and an empty __init__.py) on PYTHONPATH. Prints
`ok <step>` per check; exits non-zero on failure.
"""

import asyncio
import os
import pathlib
import sys

from cloud_app.fluxon import FluxonClient, FluxonError, StorageEntryKind, TransferProgress, Trust
from cloud_app.cloud import (
    CloudClient,
    CreateOwnerRequest,
    Credentials,
    PathRequest,
    WriteFileRequest,
)


def ok(step):
    print(f"ok {step}", flush=True)


class Progress(TransferProgress):
    """Records every report; raises `error` once `fail_after` bytes have moved."""

    def __init__(self, fail_after=None, error=None):
        self.reports = []
        self.fail_after = fail_after
        self.error = error

    def on_progress(self, done, total):
        self.reports.append((done, total))
        if self.fail_after is not None and done >= self.fail_after:
            raise self.error


async def main(address, cert, workdir):
    client = await FluxonClient.connect(address, Trust.CERTIFICATE_FILE(path=cert), None, [])
    cloud = CloudClient(client)
    storage = client.storage()
    ok("connect")

    account = await cloud.signup(Credentials(username=f"py{os.getpid()}", password="a long password"))
    assert account.user_id > 0
    ok("signup")

    owner = await cloud.create_owner(CreateOwnerRequest(storage_limit=4 << 20))
    await storage.create_directory(owner.grant, owner.storage_path)
    root = owner.root
    folder = await cloud.create_folder(PathRequest(root=root, path="docs"))
    await storage.create_directory(folder.grant, folder.storage_path)
    ok("owner-and-folder")

    async def tree():
        """The application's tree of the root, checked against storage's."""
        reply = await cloud.read_tree(PathRequest(root=root))
        listed = await storage.read_tree(reply.grant, reply.storage_path)
        ours = sorted((e.path, e.size) for e in reply.entries if not e.directory)
        theirs = sorted((e.name, e.size) for e in listed if e.kind == StorageEntryKind.FILE)
        assert ours == theirs, f"the application's files {ours} differ from storage's {theirs}"
        return ours, reply.usage.storage_used

    # Upload and download a file, with progress and the checksum compared.
    data = bytes((i * 31 + i // 251) % 256 for i in range(1 << 20))
    # Local paths are str or any os.PathLike.
    source = pathlib.Path(workdir) / "data.bin"
    with open(source, "wb") as f:
        f.write(data)
    grant = await cloud.write_file(WriteFileRequest(root=root, path="docs/data.bin", size=len(data),
                                                    mime_type="application/octet-stream"))
    # Unset fields take their protobuf defaults: mime_type "" (the server's default type).
    assert WriteFileRequest(root=root, path="x") == WriteFileRequest(root=root, path="x", size=0,
                                                                     mime_type="")
    progress = Progress()
    receipt = await storage.upload_file(grant.grant, grant.storage_path, source, progress, False)
    assert receipt.size == len(data) and progress.reports, (receipt.size, progress.reports)
    ok("upload")
    read = await cloud.read_file(PathRequest(root=root, path="docs/data.bin"))
    target = pathlib.Path(workdir) / "copy.bin"
    down = await storage.download_file(read.grant, read.storage_path, target, None)
    assert down.checksum == receipt.checksum, "checksums differ"
    with open(target, "rb") as f:
        assert f.read() == data, "downloaded bytes differ"
    ok("download")
    assert await tree() == ([("docs/data.bin", len(data))], len(data))
    ok("tree")

    # Over the quota: a typed exception with the server's message.
    try:
        await cloud.write_file(WriteFileRequest(root=root, path="docs/huge.bin", size=8 << 20))
        raise AssertionError("a write over the quota was granted")
    except FluxonError.ResourceExhausted as e:
        assert "quota exceeded" in str(e), str(e)
    ok("quota-refused")

    # An upload past its grant's cap is cut off by storage: the phantom-file case. Neither the
    # tree nor storage has it, and storage's report released the reservation before the
    # client heard of the refusal.
    grant = await cloud.write_file(WriteFileRequest(root=root, path="docs/liar.bin", size=1024))
    try:
        await storage.upload_bytes(grant.grant, grant.storage_path, data[:64 * 1024])
        raise AssertionError("an upload past its cap was stored")
    except FluxonError.ResourceExhausted:
        pass
    assert await tree() == ([("docs/data.bin", len(data))], len(data))
    try:
        await cloud.read_file(PathRequest(root=root, path="docs/liar.bin"))
        raise AssertionError("the refused upload was recorded")
    except FluxonError.NotFound:
        pass
    ok("no-phantom")

    # A progress callback that raises stops the upload; the caller gets an error naming the
    # callback and the exception; nothing is recorded or stored. (Its reservation is released
    # when storage sees the stopped stream, or expires if the stream ended before storage read
    # its request.)
    grant = await cloud.write_file(WriteFileRequest(root=root, path="docs/half.bin", size=len(data)))
    try:
        await storage.upload_file(grant.grant, grant.storage_path, source,
                                  Progress(fail_after=1, error=ValueError("disk on fire")), False)
        raise AssertionError("an upload whose callback raised completed")
    except FluxonError.Internal as e:
        assert "callback" in str(e) and "disk on fire" in str(e), str(e)
    files, _ = await tree()
    assert files == [("docs/data.bin", len(data))], files
    ok("callback-raises")

    # Delete: the hook frees the bytes once storage has removed the file.
    delete = await cloud.delete_item(PathRequest(root=root, path="docs/data.bin"))
    await storage.delete_item(delete.grant, delete.storage_path)
    files, _ = await tree()
    assert files == [], files
    ok("delete")

    client.disconnect()
    ok("close")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
