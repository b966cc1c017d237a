"""The university example's flow in Python, against a live university server: a teacher and a
student sign up (each with its profile, the schema's oneof), the student enrolls, and the
teacher's announcement reaches the student's Python handler through a reverse call.

Usage: university_flow.py ADDRESS CERT_PEM_PATH, with the package `university_app` (the
generated fluxon.py and university.py, libuniversity_bindings.so and an empty __init__.py) on
PYTHONPATH. Prints `ok <step>` per check; exits non-zero on failure.
"""

import asyncio
import os
import sys

from university_app import fluxon, university as university_module
from university_app.fluxon import FluxonClient, FluxonError, Trust
from university_app.university import (
    Ack,
    AnnounceRequest,
    CreateCourseRequest,
    EnrollRequest,
    Role,
    SignupRequest,
    SignupRequestProfile,
    StudentProfile,
    TeacherProfile,
    UniversityClient,
    UniversityEventsHandler,
    university_events_service,
)


def ok(step):
    print(f"ok {step}", flush=True)


async def each(stream):
    """A server stream's replies as an async iterator (`async for`)."""
    while (reply := await stream.next()) is not None:
        yield reply


class Device(UniversityEventsHandler):
    """A student's device: shows announcements."""

    def __init__(self):
        self.seen = []

    async def notify(self, request):
        self.seen.append((request.course_code, request.teacher, request.text))
        return Ack()


async def main(address, cert):
    # Reverse-call handlers are async Python called from Rust threads: tell each generated
    # module which event loop runs them.
    loop = asyncio.get_running_loop()
    fluxon.uniffi_set_event_loop(loop)
    university_module.uniffi_set_event_loop(loop)
    trust = Trust.CERTIFICATE_FILE(path=cert)
    run = os.getpid()
    teacher_client = await FluxonClient.connect(address, trust, None, [])
    teacher = UniversityClient(teacher_client)
    device = Device()
    student_client = await FluxonClient.connect(address, trust, None,
                                                [university_events_service(device)])
    student = UniversityClient(student_client)
    ok("connect")

    account = await teacher.signup(SignupRequest(
        username=f"ada{run}", password="a long password", email=f"ada{run}@uni.example",
        profile=SignupRequestProfile.TEACHER(value=TeacherProfile(name="Ada", department="CS"))))
    assert account.role == Role.TEACHER and account.name == "Ada", account
    account = await student.signup(SignupRequest(
        username=f"bob{run}", password="a long password", email=f"bob{run}@uni.example",
        profile=SignupRequestProfile.STUDENT(value=StudentProfile(name="Bob",
                                                                  birth_date="2001-05-17"))))
    assert account.role == Role.STUDENT and account.name == "Bob", account
    ok("signup-oneof")

    try:
        await teacher.signup(SignupRequest(username=f"eve{run}", password="a long password",
                                           email=f"eve{run}@uni.example"))
        raise AssertionError("a signup without a profile was accepted")
    except FluxonError.InvalidArgument:
        pass
    ok("signup-without-profile")

    code = f"CS{run}"
    course = await teacher.create_course(CreateCourseRequest(name="Databases", code=code))
    assert course.teacher == "Ada", course
    enrolled = await student.enroll(EnrollRequest(course_code=code))
    assert enrolled.code == code, enrolled
    mine = await student.my_courses()
    assert [c.code for c in mine.courses] == [code], mine
    ok("courses")

    # The catalog is a server stream: read whole, then read one and cancel.
    await teacher.create_course(CreateCourseRequest(name="Compilers", code=f"{code}b"))
    codes = [c.code async for c in each(await student.catalog())]
    assert codes.index(code) + 1 == codes.index(f"{code}b"), codes
    catalog = await student.catalog()
    first = await catalog.next()
    assert first is not None, "the catalog is not empty"
    catalog.cancel()
    assert await catalog.next() is None, "nothing after cancel"
    # Refusals come with the first reply: the call itself only opens the stream.
    anonymous_client = await FluxonClient.connect(address, trust, None, [])
    refused = await UniversityClient(anonymous_client).catalog()
    try:
        await refused.next()
        raise AssertionError("an anonymous caller read the catalog")
    except FluxonError.Unauthenticated:
        pass
    assert await refused.next() is None, "a failed stream raises once"
    anonymous_client.disconnect()
    ok("catalog-stream")

    reply = await teacher.announce(AnnounceRequest(course_code=code, text="exam on Friday"))
    assert (reply.students, reply.delivered, reply.failed) == (1, 1, 0), reply
    assert device.seen == [(code, "Ada", "exam on Friday")], device.seen
    ok("announce-reverse-call")

    teacher_client.disconnect()
    student_client.disconnect()
    ok("close")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
