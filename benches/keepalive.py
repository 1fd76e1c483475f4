"""Sends one request N times, one after another, on one keep-alive connection,
and reads each answer in full (used by benches/instructions.sh).

python3 benches/keepalive.py N HOST:PORT 'GET /path?query' [Header: value ...]
python3 benches/keepalive.py N HOST:PORT @requests.json

A `{i}` in the request line is replaced by the request's number modulo 1000,
zero-padded to three digits: each of a thousand clients asking its own question.
`@requests.json` (written by benches/fleet.py) is a list of [path, {headers}]:
request i is entry i modulo its length.

Exits non-zero if any answer is not a 200 or 304, or the connection closes.
"""
import json
import socket
import sys

n, addr, line, headers = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
host, port = addr.rsplit(":", 1)


def encode(line, headers):
    head = "".join(h + "\r\n" for h in headers)
    return ("%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (line, addr, head)).encode()


if line.startswith("@"):
    with open(line[1:]) as f:
        requests = [encode("GET " + path, ["%s: %s" % kv for kv in h.items()]) for path, h in json.load(f)]
else:
    requests = [encode(line.replace("{i}", "%03d" % i), headers) for i in range(1000 if "{i}" in line else 1)]
sock = socket.create_connection((host, int(port)))
buf = b""
for i in range(n):
    sock.sendall(requests[i % len(requests)])
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    if status not in (200, 304):
        sys.exit("answered %d" % status)
    length = 0
    for h in head.split(b"\r\n")[1:]:
        name, _, value = h.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(buf) < length:
        chunk = sock.recv(65536)
        if not chunk:
            sys.exit("connection closed")
        buf += chunk
    buf = buf[length:]
