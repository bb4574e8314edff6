"""The buffered paho client: what it relies on in paho, and that reads stay byte-exact."""

from __future__ import annotations

import inspect
import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from streamd.mqtt_client import CHUNK, BufferedClient, BufferedSocket


def test_paho_still_has_the_hooks_the_buffer_relies_on() -> None:
    assert hasattr(mqtt.Client, "_create_socket")
    loop = inspect.getsource(mqtt.Client._loop)
    assert "pending()" in loop and "self.loop_read()" in loop
    assert "self._sock.recv(" in inspect.getsource(mqtt.Client._sock_recv)


def test_reads_are_byte_exact_across_chunks_and_report_pending() -> None:
    a, b = socket.socketpair()
    data = bytes(range(256)) * (3 * CHUNK // 256 + 7)
    b.sendall(data[:100])
    sock = BufferedSocket(a)
    assert sock.recv(1) == data[:1] and sock.pending() == 99  # the rest is buffered
    assert sock.recv(10) == data[1:11]
    assert sock.recv(1000) == data[11:100]  # what was buffered, no more
    assert sock.pending() == 0
    a.setblocking(False)
    try:
        sock.recv(1)
        raise AssertionError("an empty non-blocking socket must raise")
    except BlockingIOError:
        pass
    sender = threading.Thread(target=b.sendall, args=(data[100:],))
    sender.start()
    got = bytearray(data[:100])
    deadline = time.monotonic() + 10
    while len(got) < len(data) and time.monotonic() < deadline:
        try:
            got += sock.recv(7)
        except BlockingIOError:
            time.sleep(0.001)
    sender.join()
    assert bytes(got) == data
    b.close()
    assert sock.recv(1) == b""  # EOF passes through
    assert sock.fileno() == a.fileno()  # everything else is the socket's own
    a.close()


def test_a_burst_of_small_messages_arrives_whole_and_in_order(broker: int) -> None:
    """Many packets per recv: each one delivered once, in order, none left in the buffer
    when the publisher goes quiet."""
    got: list[bytes] = []
    done = threading.Event()
    sub = BufferedClient(callback_api_version=CallbackAPIVersion.VERSION2)

    def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        got.append(msg.payload)
        if len(got) == 5000:
            done.set()

    ready = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: ready.set()
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("burst/#", qos=1)
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    assert ready.wait(10)
    pub = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", broker)
    pub.loop_start()
    infos = [pub.publish("burst/one", b"%d" % i, qos=1) for i in range(5000)]
    for info in infos:
        info.wait_for_publish(10)
    assert done.wait(20), len(got)
    time.sleep(0.2)
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    assert got == [b"%d" % i for i in range(5000)]
