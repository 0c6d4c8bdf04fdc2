"""Batch schedulers (Slurm, PBS, SGE, LSF): engines as one job rendered from a template.

Each launcher renders a job script from ``batch_template`` (a ``str.format`` template:
write literal braces as ``{{`` and ``}}``), writes it next to the hub's logs, and submits
it with the scheduler's submit command.  With ``dry_run`` nothing is submitted: the
script is printed and returned.  The engines read the hub's engine connection file
(``--file``), so compute nodes need the profile directory on a shared file system, and
the controller must listen on an address they can reach (``Cluster.controller_ip``).

Template fields: ``{n}``, ``{job_name}``, ``{output}`` (the job's log file),
``{directives}`` (lines from ``queue``/``account``/``walltime``/``extra_directives``),
``{program_and_args}`` (the quoted engine command), ``{cluster_id}``, ``{profile_dir}``,
``{engine_file}``, ``{log_dir}``, ``{work_dir}``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time

from traitlets import Bool, Float, List, Unicode

from ..errors import LaunchFailed
from .base import EngineLauncher, EngineSet

_LOOP = """for i in $(seq 1 {n}); do
    {program_and_args} &
done
wait
"""


#: most characters of a scheduler command's own message put into an error's first line
MAX_SAYS = 300


def command_says(result: subprocess.CompletedProcess) -> str:
    """What a failed command said, for the first line of an error (shown by the panel, the CLI
    and %hub): its last lines of stderr (else stdout), joined; '(no output)' when it said nothing."""
    for stream in (result.stderr, result.stdout):
        lines = [line.strip() for line in stream.decode("utf8", "replace").splitlines() if line.strip()]
        if lines:
            return " / ".join(lines[-3:])[:MAX_SAYS]
    return "(no output)"


class BatchEngineLauncher(EngineLauncher):
    """Base class of batch-scheduler launchers (submit a rendered job script)."""

    scheduler = "batch"
    poll_interval = 5.0

    batch_template = Unicode("", config=True, help="Job script template (str.format; see the module docs).")
    submit_command = List(Unicode(), config=True, help="Command that submits a job script; '{script}' is its path.")
    submit_via_stdin = Bool(False, config=True, help="Feed the script on the submit command's stdin.")
    job_id_regexp = Unicode(r"(\d+)", config=True, help="Regular expression whose first group is the job id "
                                                        "in the submit command's output.")
    cancel_command = List(Unicode(), config=True, help="Command that cancels a job; '{job_id}' is its id.")
    status_command = List(Unicode(), config=True,
                          help="Command that reports a job's state; '{job_id}' is its id (empty: do not poll).")
    running_regexp = Unicode("", config=True, help="Output of status_command matching this means the job is "
                                                   "queued or running; otherwise (or on a non-zero exit) it ended.")
    queue = Unicode("", config=True, help="Queue / partition to submit to.").tag(basic=True, title="Queue / partition")
    account = Unicode("", config=True, help="Account / project to charge.").tag(basic=True)
    walltime = Unicode("", config=True, help="Wall-clock limit in the scheduler's format (e.g. 01:00:00)."
                       ).tag(basic=True, title="Wall-clock limit", example="01:00:00")
    extra_directives = List(Unicode(), config=True, help="Extra directive lines, copied verbatim into the script.")
    job_name = Unicode("", config=True, help="Job name (default: hubctl-<hub id>).")
    python = Unicode(sys.executable, config=True, help="Python interpreter on the compute nodes.")
    dry_run = Bool(False, config=True, help="Print and return the job script instead of submitting it.")
    command_timeout = Float(30.0, config=True, help="Seconds to wait for submit/cancel/status commands.")

    def _directive(self, kind: str, value: str) -> str:  # overridden per scheduler
        return ""

    def directives(self, n: int) -> str:
        lines = [self._directive(kind, value) for kind, value in
                 (("queue", self.queue), ("account", self.account), ("walltime", self.walltime)) if value]
        lines.extend(self.extra_directives)
        return "".join(line.rstrip("\n") + "\n" for line in lines if line)

    def program_and_args(self, engine_file: str) -> str:
        cmd = list(self.engine_cmd)
        if cmd and cmd[0] == sys.executable:
            cmd[0] = self.python
        return " ".join(shlex.quote(a) for a in [*cmd, f"--file={engine_file}", *self.engine_args])

    def output_path(self, slot: int, generation: int = 0) -> str:
        return self.log_path(slot, generation, kind=self.scheduler)

    def render(self, n: int, engine_file: str, slot: int = 0, generation: int = 0) -> str:
        """The job script for ``n`` engines."""
        fields = dict(
            n=n, job_name=self.job_name or f"hubctl-{self.cluster_id}", output=self.output_path(slot, generation),
            directives=self.directives(n), program_and_args=self.program_and_args(engine_file),
            cluster_id=self.cluster_id, profile_dir=self.profile_dir, engine_file=engine_file,
            log_dir=self.log_dir, work_dir=shlex.quote(self.work_dir or os.getcwd()),
        )
        try:
            return self.batch_template.format(**fields)
        except (KeyError, IndexError, ValueError) as e:
            raise LaunchFailed(f"{self.scheduler} job template cannot be rendered: {e!r} "
                               "(write literal braces as {{ and }})") from None

    def _run(self, cmd: list, stdin: bytes = b"") -> subprocess.CompletedProcess:
        try:
            return subprocess.run(cmd, input=stdin, capture_output=True, timeout=self.command_timeout,
                                  env=self._command_env())
        except FileNotFoundError:
            raise LaunchFailed(f"{self.scheduler}: {cmd[0]} not found on PATH") from None
        except subprocess.TimeoutExpired:
            raise LaunchFailed(f"{self.scheduler}: {' '.join(cmd)} did not answer in {self.command_timeout:g}s") from None

    def _command_env(self) -> dict:
        env = dict(os.environ)
        env.update(self.environment)
        env["IPP_PROFILE_DIR"] = self.profile_dir
        env["IPP_CLUSTER_ID"] = self.cluster_id
        return env

    async def launch(self, slots: list, engine_info: dict, engine_file: str, generation: int = 0) -> list:
        script = self.render(len(slots), engine_file, slots[0], generation)
        self.last_script = script
        if self.dry_run:
            sys.stdout.write(script)
            sys.stdout.flush()
            return []
        path = os.path.join(self.log_dir, f"hubctl-{self.scheduler}-{self.cluster_id}-{slots[0]}.{generation}.sh")
        with open(path, "w") as f:
            f.write(script)
        os.chmod(path, 0o700)
        cmd = [a.format(script=path) for a in self.submit_command]
        result = self._run(cmd, script.encode() if self.submit_via_stdin else b"")
        out = (result.stdout + result.stderr).decode("utf8", "replace")
        if result.returncode != 0:
            raise LaunchFailed(f"{self.scheduler}: {' '.join(cmd)} failed with code {result.returncode}: "
                               f"{command_says(result)}", log_tail=out)
        match = re.search(self.job_id_regexp, out)
        if not match:
            raise LaunchFailed(f"{self.scheduler}: no job id in the output of {' '.join(cmd)}: {command_says(result)}",
                               log_tail=out)
        es = EngineSet(slot=slots[0], count=len(slots), job_id=match.group(1), log=self.output_path(slots[0], generation),
                       generation=generation, host=self.scheduler)
        es._last_poll = time.monotonic()
        return [es]

    def job_alive(self, job_id: str) -> bool:
        if not self.status_command:
            return True
        try:
            result = self._run([a.format(job_id=job_id) for a in self.status_command])
        except LaunchFailed:
            return True  # cannot tell: assume it still runs
        if result.returncode != 0:
            return False
        out = result.stdout.decode("utf8", "replace")
        return bool(re.search(self.running_regexp, out, re.M)) if self.running_regexp else True

    def poll(self, es: EngineSet) -> tuple:
        if not es.job_id:
            return super().poll(es)
        last = getattr(es, "_last_poll", 0.0)
        if time.monotonic() - last < self.poll_interval:
            return (False, None)
        es._last_poll = time.monotonic()
        return (not self.job_alive(es.job_id), None)

    def can_signal(self, es: EngineSet) -> bool:
        return not es.job_id

    def signal(self, es: EngineSet, sig: int) -> bool:
        return False  # signals reach batch engines through the hub (Client.send_signal)

    async def stop(self, es: EngineSet, timeout: float) -> None:
        if not es.job_id:
            return await super().stop(es, timeout)
        try:
            result = self._run([a.format(job_id=es.job_id) for a in self.cancel_command])
        except LaunchFailed as e:
            self.log.warning("cancelling %s job %s: %s", self.scheduler, es.job_id, e)
            return
        if result.returncode != 0:
            self.log.warning("cancelling %s job %s failed with code %s: %s", self.scheduler, es.job_id,
                             result.returncode, command_says(result))

    def describe(self, es: EngineSet, returncode) -> dict:
        if es.job_id:
            return {"code": None, "signal": None,
                    "reason": f"{self.scheduler} job {es.job_id} ended (see {es.log})"}
        return super().describe(es, returncode)


class SlurmEngineLauncher(BatchEngineLauncher):
    """Engines as one Slurm job (sbatch; srun starts one engine per task)."""

    scheduler = "slurm"
    batch_template = Unicode(
        "#!/bin/sh\n#SBATCH --job-name={job_name}\n#SBATCH --ntasks={n}\n#SBATCH --output={output}\n"
        "#SBATCH --chdir={work_dir}\n{directives}\nexport IPP_CLUSTER_ID={cluster_id}\nsrun {program_and_args}\n",
        config=True, help="Slurm job script template.")
    submit_command = List(Unicode(), default_value=["sbatch", "--parsable", "{script}"], config=True,
                          help="Command that submits the job script.")
    job_id_regexp = Unicode(r"^(\d+)", config=True, help="First group: the job id in sbatch's output.")
    cancel_command = List(Unicode(), default_value=["scancel", "{job_id}"], config=True, help="Cancels a job.")
    status_command = List(Unicode(), default_value=["squeue", "-h", "-j", "{job_id}", "-o", "%T"], config=True,
                          help="Reports a job's state.")
    running_regexp = Unicode(r"^(PENDING|RUNNING|CONFIGURING|SUSPENDED|REQUEUED|RESIZING|COMPLETING)", config=True,
                             help="squeue states of a live job.")

    def _directive(self, kind, value):
        flag = {"queue": "--partition", "account": "--account", "walltime": "--time"}[kind]
        return f"#SBATCH {flag}={value}"


class PBSEngineLauncher(BatchEngineLauncher):
    """Engines as one PBS / OpenPBS / Torque job (qsub)."""

    scheduler = "pbs"
    batch_template = Unicode(
        "#!/bin/sh\n#PBS -N {job_name}\n#PBS -j oe\n#PBS -o {output}\n#PBS -l select=1:ncpus={n}\n{directives}\n"
        "cd {work_dir}\nexport IPP_CLUSTER_ID={cluster_id}\n" + _LOOP,
        config=True, help="PBS job script template.")
    submit_command = List(Unicode(), default_value=["qsub", "{script}"], config=True, help="Submits the job script.")
    job_id_regexp = Unicode(r"^(\d+[^\s]*)", config=True, help="First group: the job id in qsub's output.")
    cancel_command = List(Unicode(), default_value=["qdel", "{job_id}"], config=True, help="Cancels a job.")
    status_command = List(Unicode(), default_value=["qstat", "-f", "{job_id}"], config=True,
                          help="Reports a job's state.")
    running_regexp = Unicode(r"job_state = [QRHESTW]\b", config=True, help="qstat output of a live job.")

    def _directive(self, kind, value):
        return {"queue": f"#PBS -q {value}", "account": f"#PBS -A {value}",
                "walltime": f"#PBS -l walltime={value}"}[kind]


class SGEEngineLauncher(BatchEngineLauncher):
    """Engines as one (Son of / Univa) Grid Engine job (qsub)."""

    scheduler = "sge"
    parallel_environment = Unicode("smp", config=True, help="SGE parallel environment for the engine slots."
                                   ).tag(basic=True)
    batch_template = Unicode(
        "#!/bin/sh\n#$ -N {job_name}\n#$ -j y\n#$ -o {output}\n#$ -S /bin/sh\n{directives}\n"
        "cd {work_dir}\nexport IPP_CLUSTER_ID={cluster_id}\n" + _LOOP,
        config=True, help="SGE job script template.")
    submit_command = List(Unicode(), default_value=["qsub", "{script}"], config=True, help="Submits the job script.")
    job_id_regexp = Unicode(r"[Yy]our job (\d+)", config=True, help="First group: the job id in qsub's output.")
    cancel_command = List(Unicode(), default_value=["qdel", "{job_id}"], config=True, help="Cancels a job.")
    status_command = List(Unicode(), default_value=["qstat", "-j", "{job_id}"], config=True,
                          help="Reports a job's state (exit code 0 while the job exists).")
    running_regexp = Unicode(r"job_number", config=True, help="qstat -j output of a live job.")

    def directives(self, n: int) -> str:
        pe = f"#$ -pe {self.parallel_environment} {n}\n" if self.parallel_environment else ""
        return pe + super().directives(n)

    def _directive(self, kind, value):
        return {"queue": f"#$ -q {value}", "account": f"#$ -A {value}", "walltime": f"#$ -l h_rt={value}"}[kind]


class LSFEngineLauncher(BatchEngineLauncher):
    """Engines as one IBM Spectrum LSF job (bsub)."""

    scheduler = "lsf"
    batch_template = Unicode(
        "#!/bin/sh\n#BSUB -J {job_name}\n#BSUB -n {n}\n#BSUB -o {output}\n#BSUB -R \"span[hosts=1]\"\n"
        "{directives}\ncd {work_dir}\nexport IPP_CLUSTER_ID={cluster_id}\n" + _LOOP,
        config=True, help="LSF job script template.")
    submit_command = List(Unicode(), default_value=["bsub"], config=True, help="Submits the job (script on stdin).")
    submit_via_stdin = Bool(True, config=True, help="bsub reads the job script from stdin.")
    job_id_regexp = Unicode(r"Job <(\d+)>", config=True, help="First group: the job id in bsub's output.")
    cancel_command = List(Unicode(), default_value=["bkill", "{job_id}"], config=True, help="Cancels a job.")
    status_command = List(Unicode(), default_value=["bjobs", "-noheader", "-o", "stat", "{job_id}"], config=True,
                          help="Reports a job's state.")
    running_regexp = Unicode(r"^(PEND|RUN|PSUSP|USUSP|SSUSP|WAIT|PROV)", config=True, help="bjobs states of a live job.")

    def _directive(self, kind, value):
        return {"queue": f"#BSUB -q {value}", "account": f"#BSUB -P {value}", "walltime": f"#BSUB -W {value}"}[kind]
