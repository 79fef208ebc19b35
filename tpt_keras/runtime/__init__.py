"""The runtime: where and how a run executes, joined to no data and no model.

* :mod:`~tpt_keras.runtime.strategies`: devices, ``tf.distribute`` strategies, determinism, the
  learning-rate rule for a changed global batch;
* :mod:`~tpt_keras.runtime.precision`: the dtype policy and the XLA choice per device;
* :mod:`~tpt_keras.runtime.distribute`: one ``fit`` for every strategy;
* :mod:`~tpt_keras.runtime.multi_worker`: the training loop under ``MultiWorkerMirroredStrategy``;
* :mod:`~tpt_keras.runtime.backup`: every model and optimizer variable and the finished epochs;
* :mod:`~tpt_keras.runtime.run_folder`: the files of a run folder, written crash-safe, its log
  and its lock.

Importing the package loads no TensorFlow; import the module you need.
"""
