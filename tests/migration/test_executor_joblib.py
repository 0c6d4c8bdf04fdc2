"""concurrent.futures and joblib / scikit-learn on the cluster, on both clients."""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, as_completed, wait

import pytest


def square(x):
    return x * x


def test_executor_submit_map_as_completed_and_shutdown(rc):
    ex = rc.executor()
    assert isinstance(ex, Executor)
    futures = {ex.submit(square, i): i for i in range(8)}
    assert sorted((futures[f], f.result()) for f in as_completed(futures, timeout=30)) == \
        [(i, i * i) for i in range(8)]
    done, _ = wait([ex.submit(square, 3)], timeout=30, return_when=FIRST_COMPLETED)
    assert [f.result() for f in done] == [9]
    assert list(ex.map(square, range(5))) == [0, 1, 4, 9, 16]
    view_ex = rc[:].executor
    assert sorted(view_ex.map(square, range(4))) == [0, 1, 4, 9]
    with rc.load_balanced_view().executor as ex2:
        pending = [ex2.submit(square, i) for i in range(3)]
    assert [f.result(0) for f in pending] == [0, 1, 4]  # shutdown(wait=True) waited for them


def test_joblib_parallel_on_the_engines(rc):
    joblib = pytest.importorskip("joblib")
    rc.load_balanced_view().register_joblib_backend()
    with joblib.parallel_backend("ipyparallel"):
        assert joblib.Parallel(n_jobs=-1)(joblib.delayed(square)(i) for i in range(20)) == \
            [i * i for i in range(20)]
        pids = set(joblib.Parallel(n_jobs=2)(joblib.delayed(_pid)() for _ in range(8)))
    assert pids <= set(rc[:].apply_sync(_pid)) and pids


def _pid():
    import os

    return os.getpid()


def test_scikit_learn_n_jobs_runs_on_the_engines(rc):
    joblib = pytest.importorskip("joblib")
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, cross_val_score

    X, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500)
    local = cross_val_score(model, X, y, cv=5)
    rc.load_balanced_view().register_joblib_backend()
    with joblib.parallel_backend("ipyparallel"):
        remote = cross_val_score(model, X, y, cv=5, n_jobs=-1)
        search = GridSearchCV(model, {"C": [0.1, 1.0, 10.0]}, cv=3, n_jobs=-1).fit(X, y)
    assert list(remote) == pytest.approx(list(local))
    assert search.best_params_["C"] in (0.1, 1.0, 10.0)
    assert len(search.cv_results_["mean_test_score"]) == 3
