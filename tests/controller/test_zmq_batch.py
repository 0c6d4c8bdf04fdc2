"""The batched zmq calls (the C module ``_zmqbatch``) and the pure-pyzmq calls behave the same.

Every test runs on real sockets twice: with the C module (``native``) and with it turned off
(``pure``), as on a machine where it was not built.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import sysconfig
import time

import pytest
import zmq

from jupyter_hub_ctl.wire import reader

FRAMES = [b"", b"x", b"{}" * 40, os.urandom(100_000), b"last"]


@pytest.fixture(params=["native", "pure"])
def mode(request, monkeypatch):
    if request.param == "native":
        if reader.native is None:
            pytest.fail("the C module is not loaded (was the package built with a C compiler?)")
    else:
        monkeypatch.setattr(reader, "native", None)
    return request.param


@pytest.fixture
def pair(zctx):
    router = zctx.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = zctx.socket(zmq.DEALER)
    dealer.linger = 0
    dealer.connect(f"tcp://127.0.0.1:{port}")
    yield router, dealer
    router.close()
    dealer.close()


def recv_within(sock, seconds=10.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sock.poll(100):
            frames = reader.recv_frames(sock)
            if frames is not None:
                return frames
    raise AssertionError("no message within the deadline")


def test_the_c_module_is_built_where_a_compiler_is():
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc}) on this machine: the package runs on pyzmq's calls")
    assert reader.native is not None, "the C module was not built or could not find libzmq"
    env = dict(os.environ, JUPYTER_HUB_CTL_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", "from jupyter_hub_ctl.wire import reader; print(reader.native)"],
                         env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_frames_arrive_intact_in_order(mode, pair):
    router, dealer = pair
    for kind in (list, tuple):  # send_frames takes any sequence
        reader.send_frames(dealer, kind(FRAMES))
        got = recv_within(router)
        assert got[1:] == FRAMES and type(got[0]) is bytes
        reader.send_frames(router, [got[0], *FRAMES[::-1]])
        assert recv_within(dealer) == FRAMES[::-1]
    assert reader.recv_frames(router) is None  # nothing waiting: None, not an exception


def test_every_bytes_like_frame_can_be_sent(mode, pair):
    router, dealer = pair
    frames = [b"bytes", memoryview(b"view"), bytearray(b"array"), zmq.Frame(b"frame")]
    reader.send_frames(dealer, frames)
    assert recv_within(router)[1:] == [b"bytes", b"view", b"array", b"frame"]
    reader.send_frames(dealer, frames, copy=False)  # zero-copy for what is large, copies otherwise
    assert recv_within(router)[1:] == [b"bytes", b"view", b"array", b"frame"]
    with pytest.raises(TypeError):
        reader.send_frames(dealer, ["text is not bytes"])


def test_errors_are_zmq_errors(mode, pair):
    router, _ = pair
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    with pytest.raises(zmq.ZMQError) as e:
        reader.send_frames(router, [b"no such peer", b"x"])
    assert e.value.errno == zmq.EHOSTUNREACH
    router.close()
    with pytest.raises(zmq.ZMQError):
        reader.recv_frames(router)
    with pytest.raises(zmq.ZMQError):
        reader.send_frames(router, [b"a", b"b"])


@pytest.mark.asyncio
async def test_a_reader_drains_batches_and_stops_when_its_socket_closes(mode, pair):
    router, dealer = pair
    loop = asyncio.get_running_loop()
    got = []
    done = loop.create_future()

    def handler(frames):
        got.append(frames[1:])
        if len(got) == 50:
            done.set_result(None)
        reader_.send([frames[0], b"ack"])  # answering on the socket being drained

    reader_ = reader.SocketReader(loop, router, handler, batch=7)  # 50 messages: several batches
    try:
        for i in range(50):
            reader.send_frames(dealer, [b"n", str(i).encode()])
        await asyncio.wait_for(done, 10)
        assert got == [[b"n", str(i).encode()] for i in range(50)]
        acks = 0
        deadline = time.monotonic() + 10
        while acks < 50 and time.monotonic() < deadline:
            if dealer.poll(100):
                assert reader.recv_frames(dealer) == [b"ack"]
                acks += 1
        assert acks == 50
        # a message arriving after a quiet spell is still seen (the FD's edge was re-armed)
        done = loop.create_future()
        got.clear()
        for i in range(50):
            reader.send_frames(dealer, [b"n", str(i).encode()])
        await asyncio.wait_for(done, 10)
        router.close()
        reader_.drain()
        assert reader_._closed
    finally:
        reader_.close()
