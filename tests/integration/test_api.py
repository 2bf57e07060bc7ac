"""The agent's local API socket (PROTOCOL.md section 9), driven with raw
frames so that several requests land in one read pass of the agent."""
import os
import time

import msgpack
import pytest
import zmq

from dxbharness import T_API_MESSAGE, T_API_RESULT


def _api_socket(endpoint):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def _recv(sock, timeout_s=10.0):
    if not sock.poll(int(timeout_s * 1000)):
        return None
    return msgpack.unpackb(sock.recv(), raw=False)


@pytest.mark.agent
def test_publish_and_ack_in_one_read_pass_do_not_deadlock_the_agent(h):
    """Regression: an API_ACK read in the same pass as an API_PUBLISH used to
    open a second LMDB write transaction on the thread holding the first."""
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    h.agent(a, b)
    receiver = h.agent(c, b, datasets=[{"id": "hr.api", "recipients": ["sq.hrss"],
                                        "inbound": "api"}])
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    sock = _api_socket(receiver.api)
    # Publish, ack (of an unknown id) and publish again, back to back.
    sock.send(msgpack.packb([1, 40, 1, "hr.api", ["sq.hrss"], "a.txt", b"one", 0],
                            use_bin_type=True))
    sock.send(msgpack.packb([1, 44, os.urandom(16)], use_bin_type=True))
    sock.send(msgpack.packb([1, 40, 2, "hr.api", ["sq.hrss"], "b.txt", b"two", 0],
                            use_bin_type=True))
    results = {}
    deadline = time.monotonic() + 15
    while len(results) < 2 and time.monotonic() < deadline:
        frame = _recv(sock, 1.0)
        if frame is not None and frame[1] == T_API_RESULT:
            results[frame[2]] = frame[3]
    assert results == {1: 0, 2: 0}, results
    sock.close()


@pytest.mark.agent
def test_api_messages_come_again_until_acknowledged(h):
    a, c = h.keygen("sq.hrss"), h.keygen("sq.civil")
    b = h.broker([a, c])
    sender = h.agent(a, b)
    receiver = h.agent(c, b, datasets=[{"id": "hr.api", "recipients": ["sq.hrss"],
                                        "inbound": "api"}])
    h.wait_connected("sq.hrss")
    h.wait_connected("sq.civil")
    pub = _api_socket(sender.api)
    pub.send(msgpack.packb([1, 40, 7, "hr.api", ["sq.civil"], "r.csv", b"x,y\n1,2\n", 0],
                           use_bin_type=True))
    res = _recv(pub)
    assert res is not None and res[1] == T_API_RESULT and res[3] == 0, res
    msg_id = bytes(res[4])
    sub = _api_socket(receiver.api)
    sub.send(msgpack.packb([1, 42, 1, ""], use_bin_type=True))
    first = [f for f in (_recv(sub), _recv(sub)) if f and f[1] == T_API_MESSAGE]
    assert first and bytes(first[0][2]) == msg_id and bytes(first[0][8]) == b"x,y\n1,2\n"
    # Not acknowledged: a new subscription is offered the same message.
    sub.close()
    sub = _api_socket(receiver.api)
    sub.send(msgpack.packb([1, 42, 2, ""], use_bin_type=True))
    again = [f for f in (_recv(sub), _recv(sub)) if f and f[1] == T_API_MESSAGE]
    assert again and bytes(again[0][2]) == msg_id
    sub.send(msgpack.packb([1, 44, msg_id], use_bin_type=True))
    sub.send(msgpack.packb([1, 42, 3, ""], use_bin_type=True))  # answered after the ack
    frames = [_recv(sub, 2.0) for _ in range(2)]
    assert not any(f and f[1] == T_API_MESSAGE for f in frames), frames
    pub.close()
    sub.close()
