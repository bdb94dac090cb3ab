"""StopSignal: the first Ctrl-C asks the loop to stop, a second one leaves at once, handlers come back."""

import os
import signal

import pytest

from ssd.engine.signals import StopSignal


def test_first_signal_sets_the_flag_and_a_second_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with StopSignal() as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before
