"""``uvicorn`` with TCP_NODELAY on its listening socket; run with a peer venv's python, same arguments as uvicorn.

With ``--workers N`` uvicorn binds the socket itself as ``socket.socket(family)`` (protocol number 0), and asyncio
then skips TCP_NODELAY on the accepted connections (it sets it only when ``sock.proto == IPPROTO_TCP``). With
Nagle's algorithm on, a response written as headers and then body waits for the client's delayed ACK: ~40 ms
per response on Linux, whatever the work (tipg: 48 ms for a 4 KB z16 tile that takes 4 ms with one worker).
gunicorn sets TCP_NODELAY on its listening socket (Lantu is served that way) and accepted sockets inherit it;
this does the same for uvicorn, so the benches compare the applications, not a socket option.
"""

import socket
import sys

import uvicorn.config

_bind_socket = uvicorn.config.Config.bind_socket


def bind_socket(self):
    sock = _bind_socket(self)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


uvicorn.config.Config.bind_socket = bind_socket

if __name__ == "__main__":  # the workers are spawned: they import this module again, without running uvicorn
    from uvicorn.main import main

    sys.exit(main())
