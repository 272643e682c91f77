"""The baseline listener: blocking reserve, run, delete. No retries, logs or heartbeats.

Usage: python minimal_listener.py HOST:PORT TUBE
"""

import json
import socket
import subprocess
import sys

host, port = sys.argv[1].rsplit(":", 1)
sock = socket.create_connection((host, int(port)))
reader = sock.makefile("rb")
sock.sendall(b"watch %b\r\n" % sys.argv[2].encode())
reader.readline()
while True:
    sock.sendall(b"reserve\r\n")
    _, job_id, size = reader.readline().split()
    job = json.loads(reader.read(int(size) + 2))
    with open(job.get("out", "/dev/null"), "ab") as out:
        subprocess.run([job["cmd"], *job.get("args", [])], cwd=job.get("workdir", "/tmp"),
                       stdin=subprocess.DEVNULL, stdout=out, stderr=out)
    sock.sendall(b"delete %b\r\n" % job_id)
    reader.readline()
