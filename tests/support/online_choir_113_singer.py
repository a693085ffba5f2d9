"""Runs online-choir 1.1.3's unmodified singer client, with a device configured.

1.1.3's own CLI cannot pass a device name, so it resets its latency to 0 and skips
every session ("not calibrated"); its GUI reads the device from a config file. We
build the same config dict the GUI would and run its SlaveClient.
Usage: online_choir_113_singer.py PORT LATENCY LOGFILE
"""
import asyncio
import sys

from onlinechoir.common.log import setup_logging
from onlinechoir.slave.slave_client import SlaveClient

setup_logging("DEBUG", sys.argv[3])
config = {"server": "127.0.0.1", "port": int(sys.argv[1]), "latency": sys.argv[2],
          "audio_input": "system", "audio_output": "system", "name": "oc113", "group": "Tenor"}
asyncio.run(SlaveClient(config, None).main())
