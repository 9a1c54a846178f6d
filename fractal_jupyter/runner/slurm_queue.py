"""What SLURM's commands say and how long they may take, for the modules that call them;
free of the executor's imports (cloudpickle), so that a server can ask without them."""

# squeue states after which a SLURM job will not change any more
ENDED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
# How long one sbatch, squeue or scancel may take.
COMMAND_TIMEOUT = 60.0
