"""Errors that reach users: each names the input at fault, what is wrong with it, and the fix."""


class SonicFlowError(Exception):
    """Base class; `code` is a stable machine-readable reason (used by the queue bridge's dead-letter reasons)."""

    code = "error"


class InputError(SonicFlowError, ValueError):
    """A user-supplied input cannot be used. Retrying the same input will fail the same way."""

    def __init__(self, input_name: str, problem: str, fix: str, code: str = "bad_input"):
        self.input_name, self.problem, self.fix, self.code = input_name, problem, fix, code
        super().__init__(f"{input_name}: {problem}. Fix: {fix}")


class StorageError(SonicFlowError):
    """The object store failed (down, wrong bucket, bad credentials). Unlike an InputError, a retry may succeed."""

    code = "storage_error"

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"storage: {problem}. Fix: {fix}")


class SyncMeterError(SonicFlowError):
    """The lip-sync meter's side venv (MediaPipe FaceMesh) is missing, or the meter failed in it."""

    code = "sync_meter"

    def __init__(self, problem: str, fix: str):
        self.problem, self.fix = problem, fix
        super().__init__(f"lip-sync meter: {problem}. Fix: {fix}")


class MissingWeightsError(SonicFlowError):
    code = "missing_weights"


class MissingDependencyError(SonicFlowError):
    """A Python package a feature needs is not installed; the message names it and the command that installs it."""

    code = "missing_dependency"

    def __init__(self, feature: str, package: str, command: str):
        self.feature, self.package, self.command = feature, package, command
        super().__init__(f"{feature} needs the Python package '{package}', which is not installed. Fix: {command}")
