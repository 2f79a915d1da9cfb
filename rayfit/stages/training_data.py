"""Stage: the training data. The prepared splits go once into the object store, where every task,
worker and trial reads them; a training split too large for it is written to Parquet and streamed."""
from __future__ import annotations

from rayfit.data.streaming import should_stream, write_split
from rayfit.evaluation.categories import categorical_layout
from rayfit.stages.state import RunState


def put_training_data(state: RunState):
    """The TrainingData (trainers/launch.py) every training stage is handed."""
    import ray

    from rayfit.trainers.launch import TrainingData
    from rayfit.trainers.target_scale import fit_target_scale

    exp, prepared = state.exp, state.prepared
    arrays = {"X_train": prepared.X_train, "y_train": prepared.y_train,
              "X_val": prepared.X_val, "y_val": prepared.y_val,
              # where the categorical columns lie, for a model that takes them natively (CatBoost)
              "categories": categorical_layout(prepared.preprocessor)}
    if prepared.train_shards:  # prepared on the cluster: the whole split is there already
        stream, train_path, train_rows = True, prepared.train_shards, prepared.split.rows["train"]
        state.display.say(f"data: {train_rows:,} training rows prepared on the cluster, streamed through Ray Data")
    else:
        stream, why = should_stream(exp.data, prepared.kind, prepared.X_train.nbytes + prepared.y_train.nbytes,
                                    ray.cluster_resources().get("object_store_memory", 0))
        state.display.say(f"data: {why}")
        train_rows = len(prepared.X_train)
        train_path = (write_split(prepared.X_train, prepared.y_train, state.location.join("data", "train.parquet"))
                      if stream else None)
    return TrainingData(
        ref=ray.put(arrays),  # once into the object store; every task, worker and trial reads it there
        train_path=train_path,
        val_ref=ray.put({"X_val": prepared.X_val, "y_val": prepared.y_val}) if stream else None,
        task=prepared.task,
        # Binary classification and regression: one output; multi-class: one logit per class.
        n_outputs=prepared.n_classes if prepared.task == "classification" and prepared.n_classes > 2 else 1,
        class_weights=([prepared.class_weights[i] for i in range(prepared.n_classes)]
                       if prepared.class_weights else None),
        seed=exp.seed,
        train_rows=train_rows,
        input_shape=tuple(prepared.X_train.shape[1:]),
        target_scale=fit_target_scale(prepared.y_train, prepared.task),
        run_key=state.run_key,
    )
