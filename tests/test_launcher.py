"""The distributed tests' one allowance (``launcher.check_finished``) cannot hide a rank that failed at its work."""

import pytest
from launcher import Run, check_finished, every_rank_done

ABORT = ("terminate called without an active exception\nFatal Python error: Aborted\n"
         "traceback : Signal 6 (SIGABRT) received by PID 21064\n")


def run(output: str, returncode: int = 1) -> Run:
    return Run(command=["torchrun"], returncode=returncode, output=output)


def test_an_abort_at_exit_after_every_rank_finished_passes_with_a_warning():
    finished = run("[rank 0] done\n[rank 1] done\n" + ABORT)
    with pytest.warns(UserWarning, match="every rank finished, then one aborted at interpreter shutdown"):
        check_finished(finished, every_rank_done(finished, 2))


@pytest.mark.parametrize("output", [
    "[rank 0] done\n" + ABORT,  # rank 1 never finished
    "[rank 0] done\n[rank 1] done\nRuntimeError: gloo\ntraceback : Signal 6 (SIGABRT) received by PID 1\n",
    "[rank 0] done\n[rank 1] done\nterminate called without an active exception\n",  # killed by the launcher only
])
def test_any_other_failure_fails(output):
    with pytest.raises(AssertionError):
        check_finished(run(output), every_rank_done(run(output), 2))


def test_a_run_killed_at_the_deadline_fails():
    hung = run("[rank 0] done\n[rank 1] done\n" + ABORT, returncode=None)
    with pytest.raises(AssertionError):
        check_finished(hung, every_rank_done(hung, 2))
