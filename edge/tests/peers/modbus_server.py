#!/usr/bin/env python3
"""A Modbus TCP peer not written by Shiki: a pymodbus server preloaded with the default
register map of deploy/edge.example.toml (values chosen to exercise every type).

Binds 127.0.0.1 port 0 and prints "PORT <n>" once listening. Then reads commands on stdin,
one per line, and answers on stdout through a pymodbus *client* (so checks go over the wire,
independent of the Rust stack):

    read hr|ir|co|di ADDRESS COUNT   ->  "hr ADDRESS v1 v2 ..."  (0-based protocol addresses)

Exits when stdin closes. Exit status 2 when pymodbus is missing (pip install pymodbus).
"""

import asyncio
import struct
import sys

try:
    from pymodbus.client import AsyncModbusTcpClient
    from pymodbus.datastore import ModbusSequentialDataBlock, ModbusServerContext
    from pymodbus.server import ModbusTcpServer

    try:  # pymodbus >= 3.10
        from pymodbus.datastore import ModbusDeviceContext as DeviceContext
    except ImportError:  # older 3.x
        from pymodbus.datastore import ModbusSlaveContext as DeviceContext
except ImportError as e:
    print(f"ERROR pymodbus is not installed ({e}); run: pip install pymodbus", flush=True)
    sys.exit(2)


def u16(v):
    return v & 0xFFFF


def f32_big(v):
    hi, lo = struct.unpack(">HH", struct.pack(">f", v))
    return [hi, lo]


def u32_little(v):
    return [v & 0xFFFF, (v >> 16) & 0xFFFF]


# Protocol address 0 is the first value of each list. pymodbus data blocks are 1-based
# ("address 1" is protocol address 0), hence the blocks start at 1.
HOLDING = [
    1,  # 40001 mode = heating
    85,  # 40002 chw_setpoint_c = 8.5
    480,  # 40003 hw_setpoint_c = 48.0
    80,  # 40004 demand_limit_pct = 80
]
INPUT = (
    [
        u16(-25),  # 30001 supply_c = -2.5
        123,  # 30002 return_c = 12.3
        u16(-75),  # 30003 outdoor_c = -7.5
        12,  # 30004 alarm_code = 12
    ]
    + f32_big(23.75)  # 30005-30006 gas_m3h = 23.75, high word first
    + u32_little(100_000)  # 30007-30008 run_hours_h = 100000, low word first
)
COILS = [True, False]  # 00001 run = true, 00002 saving = false
DISCRETE = [True]  # 10001 running = true

TABLES = {"hr": "read_holding_registers", "ir": "read_input_registers",
          "co": "read_coils", "di": "read_discrete_inputs"}


async def main():
    device = DeviceContext(
        di=ModbusSequentialDataBlock(1, DISCRETE),
        co=ModbusSequentialDataBlock(1, COILS),
        hr=ModbusSequentialDataBlock(1, HOLDING),
        ir=ModbusSequentialDataBlock(1, INPUT),
    )
    try:
        context = ModbusServerContext(devices=device, single=True)
    except TypeError:  # older 3.x
        context = ModbusServerContext(slaves=device, single=True)
    server = ModbusTcpServer(context, address=("127.0.0.1", 0))
    if not await server.listen():
        print("ERROR cannot listen", flush=True)
        sys.exit(1)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)

    client = AsyncModbusTcpClient("127.0.0.1", port=port)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        parts = line.split()
        if len(parts) != 4 or parts[0] != "read" or parts[1] not in TABLES:
            print(f"ERROR bad command {line.strip()!r}", flush=True)
            continue
        table, address, count = parts[1], int(parts[2]), int(parts[3])
        if not client.connected:
            await client.connect()
        rr = await getattr(client, TABLES[table])(address, count=count)
        if rr.isError():
            print(f"ERROR {rr}", flush=True)
            continue
        values = rr.registers if table in ("hr", "ir") else [int(b) for b in rr.bits[:count]]
        print(f"{table} {address} " + " ".join(str(v) for v in values), flush=True)
    client.close()
    await server.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
