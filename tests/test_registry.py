"""One registry mechanism (vaes.registry.Registry) behind variants, data sets, sweep studies and
the speed benchmark's trainers: duplicates raise, an unknown name is one error listing the
names, glob patterns, temporary registration for tests; and every variant answers the
balance's question itself."""
import dataclasses
from pathlib import Path

import pytest

import vaes
from benchmarks.speed import TRAINERS
from sweeps.studies import STUDIES, Study, get_study, list_studies, register_study
from vaes.data import DATASETS, DatasetSpec, Protocol, get_dataset, list_datasets, register_dataset
from vaes.registry import (VARIANTS, KLWeights, Registry, UnknownName, get_variant, list_variants,
                           register_variant, variant_options)

# The balancing strategies of the four papers vaebench compares (Higgins et al.; Dai & Wipf;
# Asperti & Trentin; Rybkin et al.): the registry must hold them
# whatever else it holds. A requirement, so named here rather than derived from the registry.
PAPER_VARIANTS = {"balanced", "beta", "learned_gamma", "sigma"}


def _variant():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        weight: float = 2.0

    class V:
        Options, name = Opts, "test_only"
    return V


def _dataset():
    return DatasetSpec("test_only", lambda *a, **k: None, Protocol(epochs=1, lr=1e-3, lr_halve_every=0, stage2_epochs=1),
                       "test data", lambda size: (1, 8, 8))


def _study():
    return Study(name="test_only", objective=lambda trial, ctx: 0.0, suite="quick", description="test")


def _trainer():
    class T:  # the speed race's interface: T(cfg, x, device, workdir).run(epochs) -> (images, loss)
        def __init__(self, cfg, x, device, workdir):
            pass
    return T


# the four instances, each with its public functions and an entry it does not hold
INSTANCES = {
    "variants": (VARIANTS, get_variant, list_variants, _variant),
    "datasets": (DATASETS, get_dataset, list_datasets, _dataset),
    "studies": (STUDIES, get_study, list_studies, _study),
    "speed trainers": (TRAINERS, TRAINERS.get, TRAINERS.list, _trainer),
}


@pytest.fixture(params=list(INSTANCES))
def instance(request):
    return INSTANCES[request.param]


def test_public_functions_read_the_instance(instance):
    reg, get, lst, _ = instance
    names = lst()
    assert names and names == sorted(names) == reg.list()  # one order for all: sorted
    assert all(get(n) is reg.get(n) for n in names)


def test_duplicate_name_raises_and_keeps_the_first(instance):
    reg, get, lst, make = instance
    name = lst()[0]
    first = get(name)
    with pytest.raises(ValueError, match=f"{reg.kind} '{name}' is already registered"):
        reg.register(name, make())
    assert get(name) is first


def test_unknown_name_is_one_error_listing_every_name(instance):
    reg, get, lst, _ = instance
    with pytest.raises(UnknownName) as e:
        get("nope")
    assert isinstance(e.value, KeyError) and isinstance(e.value, ValueError)  # callers catch either
    # the message, not KeyError's quoted repr of it
    assert str(e.value).startswith(f"{reg.kind}='nope' is unknown; choose one of: {', '.join(lst())}")
    with pytest.raises(UnknownName, match="is unknown"):
        get(["a", "list"])  # unhashable (a TOML array where a name belongs): the same error


def test_pattern_filters_names(instance):
    reg, get, lst, _ = instance
    first = lst()[0]
    assert lst(first) == [first] and lst(first[:2] + "*") == [n for n in lst() if n.startswith(first[:2])]
    assert lst("no_such_*") == []


def test_temporary_registers_and_restores(instance):
    reg, get, lst, make = instance
    before = {n: get(n) for n in lst()}
    obj = make()
    with reg.temporary("test_only", obj):
        assert get("test_only") is obj and "test_only" in lst("test_*")
        with pytest.raises(ValueError, match="already registered"):
            reg.register("test_only", make())
    assert "test_only" not in reg and {n: get(n) for n in lst()} == before
    # whatever happens inside the block is undone, an exception included
    with pytest.raises(RuntimeError), reg.temporary():
        reg.register("test_only", obj)
        raise RuntimeError("boom")
    assert "test_only" not in reg and len(reg) == len(before)


def test_public_register_functions_go_through_the_instances():
    with DATASETS.temporary():
        spec = register_dataset(_dataset())
        assert get_dataset("test_only") is spec and "test_only" in list_datasets()
    with STUDIES.temporary():
        fn = register_study("test_only", suite="quick", description="test")(lambda trial, ctx: 1.0)
        assert get_study("test_only").objective is fn
    assert "test_only" not in list_datasets() + list_studies()


def test_decorator_and_call_register_alike():
    reg = Registry("thing", hint=" (see --list)")

    @reg.register("a")
    def a():
        pass
    assert reg.register("b", 2) == 2 and reg.get("a") is a and reg.list() == ["a", "b"]
    with pytest.raises(ValueError, match=f"thing 'a' is already registered by {__name__}"):
        reg.register("a", 3)
    with pytest.raises(UnknownName, match=r"choose one of: a, b \(see --list\)$"):
        reg.get("c")


# ---- variants --------------------------------------------------------------------------------

def test_builtin_variants_are_registered():
    # one file per variant in vaes/variants, named as the variant: every file registered its class
    files = sorted(p.stem for p in (Path(vaes.__file__).parent / "variants").glob("*.py") if p.stem != "__init__")
    assert vaes.list_variants() == files and PAPER_VARIANTS <= set(files)
    assert vaes.list_variants("*gamma*") == ["learned_gamma"]


def test_register_variant_sets_name_and_options():
    @dataclasses.dataclass(frozen=True)
    class Opts:
        weight: float = 2.0

    with VARIANTS.temporary():
        @register_variant("test_only_variant", options=Opts)
        class V:
            pass
        assert get_variant("test_only_variant") is V and V.name == "test_only_variant"
        assert variant_options("test_only_variant") is Opts
        with pytest.raises(ValueError, match="already registered"):
            register_variant("beta")(type("Again", (), {}))
        with pytest.raises(TypeError, match="must be a dataclass"):
            register_variant("x", options=dict)
    assert "test_only_variant" not in list_variants()


@pytest.mark.parametrize("variant", list_variants())
def test_every_variant_says_how_its_kl_weight_reads(variant):
    """vaes.balance asks the variant (never a table keyed by its name): one weight per epoch."""
    cls = get_variant(variant)
    w = cls.kl_weights(cls.Options(), shape=(1, 8, 8), latent_dim=16, epochs=[1, 2, 3], steps_per_epoch=10)
    assert isinstance(w, KLWeights) and len(w.per_epoch) == 3 and all(x >= 0 for x in w.per_epoch)
    assert w.meaning and (w.constant is None or w.per_epoch == [w.constant] * 3)
