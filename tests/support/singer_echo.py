"""choir-singer with a simulated sound card (EchoDevice), for subprocess tests.

Usage: python -m tests.support.singer_echo LATENCY_SAMPLES [choir-singer options]
The EchoDevice's microphone hears what it plays, LATENCY_SAMPLES later, in real time.
"""
import sys

from choir_clients.rehearsal import singer
from choir_clients.rehearsal.simulated_devices import EchoDevice

if __name__ == "__main__":
    latency = int(sys.argv[1])
    singer.main(sys.argv[2:], device_factory=lambda input_device, output_device: EchoDevice(latency))
