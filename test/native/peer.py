"""A foreign SCM_RIGHTS peer for test/native/python.test.ts.

Connects to the UNIX socket in argv[1] and then:
 1. receives b'memfd' with one fd, reads 5 bytes at offset 0 of it, writes
    b'WORLD' at offset 5;
 2. sends b'pyfd' + those 5 bytes with two fds: a new memfd holding
    b'from python' and an eventfd whose counter is 9;
 3. sends 4 fds with b'many' (the test receives them with room for 2);
 4. closes the socket.
"""
import os
import socket
import sys

s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])

msg, fds, flags, _ = socket.recv_fds(s, 5, 4)
assert msg == b"memfd", msg
assert len(fds) == 1, fds
assert flags & socket.MSG_CTRUNC == 0
data = os.pread(fds[0], 5, 0)
os.pwrite(fds[0], b"WORLD", 5)
os.close(fds[0])

m = os.memfd_create("python-peer")
os.write(m, b"from python")
e = os.eventfd(9)
socket.send_fds(s, [b"pyfd" + data], [m, e])

socket.send_fds(s, [b"many"], [m, e, m, e])
os.close(m)
os.close(e)
s.close()
