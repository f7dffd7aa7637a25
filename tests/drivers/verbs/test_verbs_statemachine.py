"""The public verbs state machine (labrig.testing.verbs) against the emulated NICs."""

from hypothesis import settings

from labrig.testing.verbs import VerbsStateMachine

VerbsStateMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                               deadline=None)
TestVerbsStateMachine = VerbsStateMachine.TestCase
