"""The one room that joins the data pipelines with the model: run folders, training (one fit for every
tf.distribute strategy), the exemplar bank, evaluation and its report."""
