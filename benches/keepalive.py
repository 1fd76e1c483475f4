"""Sends one request N times, one after another, on one keep-alive connection,
and reads each answer in full (used by benches/instructions.sh).

python3 benches/keepalive.py N HOST:PORT 'GET /path?query' [Header: value ...]

Exits non-zero if any answer is not a 200 or 304, or the connection closes.
"""
import socket
import sys

n, addr, line, headers = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
host, port = addr.rsplit(":", 1)
request = ("%s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (line, addr, "".join(h + "\r\n" for h in headers))).encode()
sock = socket.create_connection((host, int(port)))
buf = b""
for _ in range(n):
    sock.sendall(request)
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
