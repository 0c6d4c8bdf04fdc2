"""Build hook: compiles the small C module ``jupyter_hub_ctl/wire/_zmqbatch.c``.

The module only speeds up the controller's, client's and engine's zmq calls; the package works
without it (pure-Python calls through pyzmq), so a machine without a C compiler or Python
headers still installs, with a warning.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sysconfig

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = os.path.join("jupyter_hub_ctl", "wire", "_zmqbatch.c")


class NativeBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            return
        target = os.path.join("jupyter_hub_ctl", "wire", "_zmqbatch" + sysconfig.get_config_var("EXT_SUFFIX"))
        cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
        cmd = [*cc, "-O2", "-shared", "-fPIC", "-I", sysconfig.get_paths()["include"],
               os.path.join(self.root, SOURCE), "-o", os.path.join(self.root, target), "-ldl"]
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or str(e)
            self.app.display_warning(f"jupyter_hub_ctl: the C module was not built; pyzmq's calls are used ({detail.strip()[:500]})")
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if version != "editable":
            build_data["force_include"][os.path.join(self.root, target)] = target
