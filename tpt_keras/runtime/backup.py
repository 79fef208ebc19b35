"""The training backup of a run: every variable of the model and the optimizer, and the finished
epochs, in one file replaced atomically after each epoch; a new ``fit`` on the same folder restores
it and continues with the next epoch, ending with the weights an uninterrupted run ends with.

It reads and writes ``model.variables`` and ``model.optimizer.variables`` in their (stable) order,
never Keras' own checkpoint format or ``BackupAndRestore``'s metadata files. Reading how far a
run got (:func:`backup_epoch`) needs numpy only: importing this module loads no TensorFlow.
"""

from __future__ import annotations

import os

import numpy as np

from tpt_keras.runtime import run_folder


def backup_epoch(backup_dir: str) -> int:
    """The number of finished epochs in ``backup_dir``'s :class:`TrainingBackup` (the epoch a run
    resumes at); 0 without a backup. Use it to start the data pipeline at the right epoch before
    calling :func:`tpt_keras.runtime.distribute.fit`. A damaged backup raises a ValueError naming the file."""
    return TrainingBackup(backup_dir).finished_epochs()


class TrainingBackup:
    """The state a run needs to continue exactly: every variable of the model (``model.variables``:
    weights, non-trainable state such as BN statistics, and the dropout layers' seed states) and of
    the optimizer (step count, moments), and the number of finished epochs.

    One file, ``DIRECTORY/state.npz``, replaced atomically at the end of every epoch (temporary
    file, fsync, rename: a kill leaves the previous epoch's backup). The data pipelines' order is a
    function of (seed, epoch), so the epoch is the whole data position.

    :meth:`callback` is the Keras callback that writes it after each epoch.

    Args:
        directory: the backup folder.
        write: False on the workers that only restore (multi-worker: the chief writes).
    """

    FILE = "state.npz"

    def __init__(self, directory: str, write: bool = True):
        self.directory = directory
        self.path = os.path.join(directory, self.FILE)
        self.write = write

    def _load(self):
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as archive:
                return {name: archive[name] for name in archive.files}
        except Exception as error:  # zipfile.BadZipFile, ValueError, OSError, EOFError
            raise ValueError(
                f"{self.path}: damaged training backup ({type(error).__name__}: {error}); delete "
                f"{self.directory} to train this run again from its first epoch") from None

    def finished_epochs(self) -> int:
        state = self._load()
        if state is None:
            return 0
        if "finished_epochs" not in state:
            raise ValueError(f"{self.path}: damaged training backup (no finished_epochs); "
                             f"delete {self.directory} to train this run again from its first epoch")
        return int(state["finished_epochs"])

    @staticmethod
    def _variables(model):
        return [("model", v) for v in model.variables] + [
            ("optimizer", v) for v in model.optimizer.variables]

    def restore(self, model) -> int | None:
        """Load the backup into ``model`` (built, optimizer built); the finished epochs, or None
        without a backup."""
        state = self._load()
        if state is None:
            return None
        variables = self._variables(model)
        names = [f"{owner}_{i:04d}" for i, (owner, _) in enumerate(variables)]
        stored = sorted(name for name in state if name != "finished_epochs")
        if sorted(names) != stored:
            raise ValueError(f"{self.path}: the backup holds {len(stored)} variables, this model "
                             f"has {len(names)}: it belongs to another model; delete "
                             f"{self.directory} to start over")
        for name, (_, variable) in zip(names, variables):
            value = state[name]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(f"{self.path}: {variable.path} has shape {value.shape} in the "
                                 f"backup, {tuple(variable.shape)} in the model; delete "
                                 f"{self.directory} to start over")
            variable.assign(value)
        return int(state["finished_epochs"])

    def save(self, model, finished_epochs: int) -> None:
        import keras

        arrays = {f"{owner}_{i:04d}": np.asarray(keras.ops.convert_to_numpy(v))
                  for i, (owner, v) in enumerate(self._variables(model))}
        arrays["finished_epochs"] = np.asarray(finished_epochs, np.int64)
        os.makedirs(self.directory, exist_ok=True)
        with run_folder.atomic_path(self.path) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, **arrays)

    def callback(self):
        """A Keras callback that saves this backup at the end of every epoch (when ``write``)."""
        import keras

        backup = self

        class SaveBackup(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if backup.write:
                    backup.save(self.model, epoch + 1)

        return SaveBackup()
