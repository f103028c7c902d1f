"""A slow HTTP/1.1 client for the e2e tests: a 4 KiB receive buffer (so the server's writes
go partial and its socket stays full), reads in small pieces with pauses, and sends each
request of argv on the same kept-alive connection. Prints one JSON line per answer:
{"status": int, "length": content-length, "received": bytes of body read, "count": jobs}.
usage: slow_reader.py PORT TOKEN PATH [PATH...]"""
import json
import socket
import sys
import time


def answer(sock, path, token):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(1024)
        if not chunk:
            raise SystemExit("connection closed before the headers")
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    length = int(next(l for l in lines if l.lower().startswith("content-length:")).split(":")[1])
    while len(body) < length:
        time.sleep(0.0005)
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    doc = json.loads(body[:length]) if len(body) >= length else {}
    return {"status": int(lines[0].split()[1]), "length": length, "received": len(body),
            "count": doc.get("count")}


def main():
    port, token, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    for path in paths:
        print(json.dumps(answer(sock, path, token)), flush=True)
    sock.close()


main()
