"""The floor of an update-with-start round trip: a workflow that answers its update at once."""

from temporalio import workflow

__all__ = ["BareDecision"]


@workflow.defn(name="BareDecision")
class BareDecision:
    """Answers its update at once."""

    def __init__(self) -> None:
        self._done = False

    @workflow.run
    async def run(self, _: str) -> None:
        """Finish once the update was answered."""
        await workflow.wait_condition(lambda: self._done)

    @workflow.update
    async def decision(self, value: str) -> str:
        """Answer immediately."""
        self._done = True
        return value
