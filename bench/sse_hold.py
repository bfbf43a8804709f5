#!/usr/bin/python3
"""Hold N idle Server-Sent Events streams open (bench/extras.sh).

    sse_hold.py HOST PORT PATH KEY N

Opens N connections with non-blocking sockets, sends GET PATH with
"Authorization: Bearer KEY" on each, and waits until every one has answered
its headers.  Then prints "ready OK FAILED" (OK: 200 text/event-stream) and
keeps the connections open, reading whatever comes, until SIGTERM or stdin
closes.
"""
import resource
import selectors
import signal
import socket
import sys
import time

host, port, path, key, n = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
    sys.argv[4], int(sys.argv[5])

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 100)), hard))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))

req = ("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
       "Authorization: Bearer %s\r\n\r\n" % (path, host, key)).encode()
sel = selectors.DefaultSelector()
head = {}            # socket -> bytes read until the end of the headers
ok = failed = 0

# connect in batches so the listen backlog is not overrun
for i in range(n):
    s = socket.socket()
    s.setblocking(False)
    s.connect_ex((host, port))
    sel.register(s, selectors.EVENT_WRITE)
    head[s] = None   # None: request not sent yet
    if i % 200 == 199:
        time.sleep(0.02)

pending = n
deadline = time.time() + 30
while pending and time.time() < deadline:
    for k, ev in sel.select(1):
        s = k.fileobj
        if head[s] is None:                  # connected: send the request
            try:
                s.send(req)
                head[s] = b""
                sel.modify(s, selectors.EVENT_READ)
            except OSError:
                failed += 1; pending -= 1; sel.unregister(s); s.close()
            continue
        try:
            data = s.recv(65536)
        except OSError:
            data = b""
        if head[s] is True:                  # headers already seen
            if not data:
                sel.unregister(s); s.close()
            continue
        head[s] += data
        if b"\r\n\r\n" in head[s] or not data:
            h = head[s].split(b"\r\n\r\n")[0].lower()
            if h.startswith(b"http/1.1 200") and b"text/event-stream" in h:
                ok += 1; head[s] = True
            else:
                failed += 1; sel.unregister(s); s.close()
            pending -= 1

print("ready %d %d" % (ok, failed + pending), flush=True)

# hold: drain what the streams send (comments, nothing much) until stdin ends
sel.register(sys.stdin, selectors.EVENT_READ)
while True:
    for k, ev in sel.select():
        if k.fileobj is sys.stdin:
            if not sys.stdin.readline():
                sys.exit(0)
            continue
        try:
            if not k.fileobj.recv(65536):
                sel.unregister(k.fileobj)
        except OSError:
            sel.unregister(k.fileobj)
