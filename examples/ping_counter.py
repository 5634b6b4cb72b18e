"""A custom protocol in under 40 lines: two nodes ping each other and count the pongs."""
import rlp
import trio
from p2p import PrivateKey, Protocol, open_server, ServerConfig


def ping_protocol(count, pongs):
    proto = Protocol("ping", version=1, length=2)  # code 0: ping(n), code 1: pong(n)

    @proto.handler(0)
    async def on_ping(conn, payload):
        await conn.send(1, payload)  # answer with the same number

    @proto.handler(1)
    async def on_pong(conn, payload):
        pongs.append(rlp.decode(payload, sedes=rlp.sedes.big_endian_int))

    @proto.on_run
    async def run(peer, conn):  # started once per connected peer
        for n in range(count):
            await conn.send(0, rlp.encode(n))
        await trio.sleep_forever()  # returning would end the session with this peer
    return proto


async def main(count=5):
    a_pongs, b_pongs = [], []
    node = lambda pongs, static=(): open_server(PrivateKey.generate(), protocols=[ping_protocol(count, pongs)],
                                                config=ServerConfig(discovery=False, static_nodes=static))
    async with node(a_pongs) as a, node(b_pongs, [a.local_node]):
        with trio.fail_after(10):
            while len(a_pongs) < count or len(b_pongs) < count:
                await trio.sleep(0.05)
    print(f"A counted {len(a_pongs)} pongs {a_pongs}, B counted {len(b_pongs)} pongs {b_pongs}")
    return a_pongs, b_pongs


if __name__ == "__main__":
    trio.run(main)
