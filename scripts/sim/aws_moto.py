"""moto's server as Canopy's AWS simulator runs it (scripts/sim/aws-sim starts it).

One change to moto: GetConsoleOutput answers with the console of the instance's machine, a file
per instance id in $CANOPY_SIM_CONSOLE_DIR that canopy-sim writes (cloud-init's SSH host key
fingerprints once the machine is up), instead of moto's fixed sample text. Everything else,
signature checks included, is moto's own. With $CANOPY_SIM_PARENT_PID the server exits when that
process is gone.

Usage: python3 aws_moto.py [moto.server arguments...]
"""
import os
import sys
import threading
import time

from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.ec2.responses.general import General
from moto.ec2.utils import Base64EncodedString

CONSOLE_DIR = os.environ.get("CANOPY_SIM_CONSOLE_DIR", "")


def get_console_output(self):
    instance_id = self._get_param("InstanceId")
    instance = self.ec2_backend.get_instance(instance_id)  # InvalidInstanceID.NotFound as moto
    text = ""
    if CONSOLE_DIR:
        try:
            with open(os.path.join(CONSOLE_DIR, os.path.basename(instance.id)), encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            pass
    return ActionResult(
        {
            "InstanceId": instance.id,
            "Timestamp": utcnow(),
            "Output": Base64EncodedString.from_raw_string(text),
        }
    )


General.get_console_output = get_console_output


def watch_parent(pid):
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass
        time.sleep(1)


if __name__ == "__main__":
    parent = int(os.environ.get("CANOPY_SIM_PARENT_PID", "0") or 0)
    if parent > 0:
        threading.Thread(target=watch_parent, args=(parent,), daemon=True).start()
    from moto.server import main

    main(sys.argv[1:])
