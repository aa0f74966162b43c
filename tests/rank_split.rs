//! Global normalisation across ranks, for every objective term: a batch split between two
//! simulated ranks (2 and 4 records: unequal, so a mean of per-rank means would be wrong)
//! gives loss shares that sum to the whole batch's loss, the whole batch's gradients when
//! summed, and the whole batch's metrics on each rank.
//!
//! The ranks are simulated in one process, exactly: the values a term sums over ranks depend
//! only on its own rank's data, so each half is first run with a recording [`RankSum`], then
//! again with one that adds the other half's recorded values, call by call (what an
//! all-reduce returns). The real collective is c10d's (`torch-dist`), tested on its own.

use std::sync::{Arc, Mutex};

use polyalign::losses::{
    BatchView, Cpo, DominantStates, Dpo, Hinge, Ipo, KlLogps, Kto, Layer, ObjectiveStack, Orpo, PairLogps,
    PreferenceObjective, RDpo, RankSum, RobustDpo, SequenceLogps, Sft, SimPo, TargetPairs, VariantStates,
};
use polyalign::mlc::{Mlc, PairwiseCosine};
use polyalign::mpo::{Mpo, MpoConfig, RetainForm, Variant};
use polyalign::train::seeded::SeededRng;
use tch::{Kind, Tensor};

const RECORDS: i64 = 6;
const SPLIT: [std::ops::Range<i64>; 2] = [0..2, 2..6];
const LANGUAGES: [&str; 3] = ["en", "sw", "bn"];

/// The leaves every view reads (gradients land here), for `RECORDS` records.
struct Leaves {
    chosen: Tensor,
    rejected: Tensor,
    chosen_count: Tensor,
    rejected_count: Tensor,
    ref_chosen: Tensor,
    ref_rejected: Tensor,
    kl_policy: Tensor,
    kl_reference: Tensor,
    /// Target pairs: (record, language, chosen, rejected, counts).
    target_record: Vec<i64>,
    target_language: Vec<&'static str>,
    target_chosen: Tensor,
    target_rejected: Tensor,
    target_count: Tensor,
    variants: Tensor,     // [RECORDS, 3, D]
    variant_mask: Tensor, // [RECORDS, 3] bool
    states: Tensor,       // [RECORDS, T, D]
    ref_states: Tensor,   // [RECORDS, T, D]
    state_mask: Tensor,   // [RECORDS, T]
}

fn uniform(rng: &mut SeededRng, shape: &[i64], lo: f64, hi: f64) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f64> = (0..n).map(|_| lo + (hi - lo) * rng.unit()).collect();
    Tensor::from_slice(&values).view(shape)
}

fn leaf(t: Tensor) -> Tensor {
    t.set_requires_grad(true)
}

impl Leaves {
    fn new(seed: u64) -> Self {
        let mut rng = SeededRng::new(seed);
        let counts = |rng: &mut SeededRng| uniform(rng, &[RECORDS], 1.0, 9.0).round();
        // Every record has a Swahili pair; records 1 and 4 have no Bengali one.
        let mut target_record = Vec::new();
        let mut target_language = Vec::new();
        for r in 0..RECORDS {
            for (lang, present) in [("sw", true), ("bn", r != 1 && r != 4)] {
                if present {
                    target_record.push(r);
                    target_language.push(lang);
                }
            }
        }
        let p = target_record.len() as i64;
        let (d, t) = (8, 5);
        let lengths = [5i64, 3, 4, 5, 2, 1];
        let state_mask = Tensor::from_slice(
            &lengths.iter().flat_map(|&n| (0..t).map(move |i| i64::from(i < n))).collect::<Vec<_>>(),
        )
        .view([RECORDS, t]);
        // Group 2 has only one variant (not counted by MLC); group 5 two of three.
        let present: Vec<bool> =
            (0..RECORDS).flat_map(|g| (0..3).map(move |k| !(g == 2 && k > 0 || g == 5 && k == 1))).collect();
        Leaves {
            chosen: leaf(uniform(&mut rng, &[RECORDS], -30.0, -5.0)),
            rejected: leaf(uniform(&mut rng, &[RECORDS], -30.0, -5.0)),
            chosen_count: counts(&mut rng),
            rejected_count: counts(&mut rng),
            ref_chosen: uniform(&mut rng, &[RECORDS], -30.0, -5.0),
            ref_rejected: uniform(&mut rng, &[RECORDS], -30.0, -5.0),
            kl_policy: leaf(uniform(&mut rng, &[RECORDS], -30.0, -5.0)),
            kl_reference: uniform(&mut rng, &[RECORDS], -30.0, -5.0),
            target_chosen: leaf(uniform(&mut rng, &[p], -30.0, -5.0)),
            target_rejected: leaf(uniform(&mut rng, &[p], -30.0, -5.0)),
            target_count: uniform(&mut rng, &[p], 1.0, 9.0).round(),
            target_record,
            target_language,
            variants: leaf(uniform(&mut rng, &[RECORDS, 3, d], -1.0, 1.0)),
            variant_mask: Tensor::from_slice(&present).view([RECORDS, 3]),
            states: leaf(uniform(&mut rng, &[RECORDS, t, d], -1.0, 1.0)),
            ref_states: uniform(&mut rng, &[RECORDS, t, d], -1.0, 1.0),
            state_mask,
        }
    }

    /// The view of records `range`, reading the leaves through index_select (so gradients
    /// flow back to them), with `ranks` when given.
    fn view(&self, range: std::ops::Range<i64>, ranks: Option<Arc<dyn RankSum>>) -> BatchView {
        let idx = Tensor::arange_start(range.start, range.end, (Kind::Int64, tch::Device::Cpu));
        let pick = |t: &Tensor| t.index_select(0, &idx);
        let pairs = |c: &Tensor, cc: &Tensor, r: &Tensor, rc: &Tensor| {
            PairLogps::from_tensors(pick(c), pick(cc), pick(r), pick(rc)).unwrap()
        };
        let targets: Vec<usize> =
            (0..self.target_record.len()).filter(|&i| range.contains(&self.target_record[i])).collect();
        let t_idx = Tensor::from_slice(&targets.iter().map(|&i| i as i64).collect::<Vec<_>>());
        let t_pick = |t: &Tensor| t.index_select(0, &t_idx);
        let target_pairs = PairLogps::new(
            SequenceLogps::new(t_pick(&self.target_chosen), t_pick(&self.target_count)).unwrap(),
            SequenceLogps::new(t_pick(&self.target_rejected), t_pick(&self.target_count)).unwrap(),
        )
        .unwrap();
        let mut view = BatchView::from_pairs(
            pairs(&self.chosen, &self.chosen_count, &self.rejected, &self.rejected_count),
            Some(pairs(&self.ref_chosen, &self.chosen_count, &self.ref_rejected, &self.rejected_count)),
        );
        view.kl = Some(KlLogps { policy: pick(&self.kl_policy), reference: pick(&self.kl_reference) });
        view.targets = Some(TargetPairs {
            policy: target_pairs,
            record: Tensor::from_slice(
                &targets.iter().map(|&i| self.target_record[i] - range.start).collect::<Vec<_>>(),
            ),
            languages: targets.iter().map(|&i| self.target_language[i].to_string()).collect(),
        });
        view.prompt_variants.insert(
            Layer::Index(1),
            VariantStates { states: pick(&self.variants), mask: Some(pick(&self.variant_mask)) },
        );
        view.dominant_states.insert(
            Layer::Index(1),
            DominantStates {
                policy: pick(&self.states),
                reference: pick(&self.ref_states),
                attention_mask: pick(&self.state_mask),
            },
        );
        view.languages = LANGUAGES.iter().map(|s| s.to_string()).collect();
        view.ranks = ranks;
        view
    }

    fn leaves(&self) -> [&Tensor; 6] {
        [&self.chosen, &self.rejected, &self.kl_policy, &self.target_chosen, &self.variants, &self.states]
    }

    /// The gradients of every leaf (zeros where none), then cleared.
    fn take_grads(&self) -> Vec<Tensor> {
        self.leaves()
            .iter()
            .map(|l| {
                let g = l.grad();
                let g = if g.defined() { g.copy() } else { l.zeros_like() };
                if l.grad().defined() {
                    let _ = l.grad().zero_();
                }
                g
            })
            .collect()
    }
}

/// One recorded contribution: shape and values (f64).
type Contribution = (Vec<i64>, Vec<f64>);

fn contribution(t: &Tensor) -> Contribution {
    (t.size(), Vec::<f64>::try_from(&t.detach().to_kind(Kind::Double).reshape([-1])).unwrap())
}

/// One simulated rank's side of the all-reduces: returns its input plus the other rank's
/// input of the same call, as recorded in the previous round (nothing in the first round), and
/// records its own inputs. A value summed over ranks may depend on an earlier sum (a loss
/// share over a global count, then the global loss), so rounds repeat until the recorded
/// inputs stop changing: then every call returned the true sum.
#[derive(Debug)]
struct Exchange {
    other: Vec<Contribution>,
    mine: Mutex<Vec<Contribution>>,
}

impl Exchange {
    fn new(other: Vec<Contribution>) -> Self {
        Self { other, mine: Mutex::new(Vec::new()) }
    }
}

impl RankSum for Exchange {
    fn all_sum(&self, t: &Tensor) -> polyalign::losses::Result<Tensor> {
        let mut mine = self.mine.lock().unwrap();
        let i = mine.len();
        mine.push(contribution(t));
        Ok(match self.other.get(i) {
            None => t.detach().copy(),
            Some((shape, values)) => {
                assert_eq!(shape, &t.size(), "call {i}: the ranks reduce different shapes");
                t.detach() + Tensor::from_slice(values).view(shape.as_slice()).to_kind(t.kind())
            }
        })
    }
}

fn close(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * (1.0 + b.abs())
}

fn check_split(name: &str, term: &dyn PreferenceObjective, leaves: &Leaves) {
    // The whole batch, one process.
    let whole = term.compute(&leaves.view(0..RECORDS, None)).unwrap_or_else(|e| panic!("{name}: {e}"));
    whole.loss.backward();
    let whole_grads = leaves.take_grads();

    // Rounds of exchanged contributions until they are stable.
    let mut recorded: Vec<Vec<Contribution>> = vec![Vec::new(), Vec::new()];
    let mut stable = false;
    for _round in 0..8 {
        let next: Vec<Vec<Contribution>> = (0..2)
            .map(|rank| {
                let exchange = Arc::new(Exchange::new(recorded[1 - rank].clone()));
                let ranks: Arc<dyn RankSum> = exchange.clone();
                let _ = term.compute(&leaves.view(SPLIT[rank].clone(), Some(ranks))).unwrap();
                let mine = exchange.mine.lock().unwrap().clone();
                mine
            })
            .collect();
        assert_eq!(next[0].len(), next[1].len(), "{name}: both ranks make the same collectives");
        stable = next == recorded;
        recorded = next;
        if stable {
            break;
        }
    }
    assert!(stable, "{name}: the exchanged values did not settle");
    let _ = leaves.take_grads();

    // Each rank with the other's final contributions.
    let mut total: Option<Tensor> = None;
    for (rank, range) in SPLIT.iter().enumerate() {
        let ranks: Arc<dyn RankSum> = Arc::new(Exchange::new(recorded[1 - rank].clone()));
        let out = term.compute(&leaves.view(range.clone(), Some(ranks))).unwrap();
        for (key, value) in whole.metrics.iter() {
            let got = out.metrics.get(key).unwrap_or_else(|| panic!("{name}: rank {rank} lacks metric {key}"));
            assert!(close(got, value), "{name}: rank {rank} metric {key} = {got}, whole batch {value}");
        }
        assert_eq!(out.metrics.iter().count(), whole.metrics.iter().count(), "{name}: rank {rank} metric names");
        total = Some(match total {
            None => out.loss,
            Some(t) => t + out.loss,
        });
    }
    let total = total.unwrap();
    let (got, want) = (total.double_value(&[]), whole.loss.double_value(&[]));
    assert!(close(got, want), "{name}: shares sum to {got}, whole batch {want}");
    total.backward();
    for (i, (g, w)) in leaves.take_grads().iter().zip(&whole_grads).enumerate() {
        let diff = (g - w).abs().max().double_value(&[]);
        let scale = w.abs().max().double_value(&[]).max(1e-12);
        assert!(diff <= 1e-6 * (1.0 + scale), "{name}: leaf {i} gradients differ by {diff} (scale {scale})");
    }
}

fn mpo(retain: RetainForm, variant: Variant) -> Mpo {
    Mpo::new(MpoConfig { beta: 1.0, retain, retain_layer: Layer::Index(1), retain_weight: 0.5, variant }).unwrap()
}

#[test]
fn every_term_split_across_ranks_equals_the_whole_batch() {
    let leaves = Leaves::new(7);
    let terms: Vec<(&str, Box<dyn PreferenceObjective>)> = vec![
        ("dpo", Box::new(Dpo::new(0.1, 0.0).unwrap())),
        ("cdpo", Box::new(Dpo::new(0.1, 0.2).unwrap())),
        ("robust_dpo", Box::new(RobustDpo::new(0.1, 0.1).unwrap())),
        ("hinge", Box::new(Hinge::new(0.1).unwrap())),
        ("ipo", Box::new(Ipo::new(0.1).unwrap())),
        ("r_dpo", Box::new(RDpo::new(0.1, 0.01).unwrap())),
        ("simpo", Box::new(SimPo::new(2.0, 1.0).unwrap())),
        ("cpo", Box::new(Cpo::new(0.1, 1.0).unwrap())),
        ("orpo", Box::new(Orpo::new(0.1).unwrap())),
        ("kto", Box::new(Kto::new(0.1, 1.0, 1.5).unwrap())),
        ("sft", Box::new(Sft::new().unwrap())),
        ("mlc", Box::new(Mlc::new(Layer::Index(1), 1.0).unwrap())),
        ("cosine", Box::new(PairwiseCosine::new(Layer::Index(1)))),
        ("mpo last token", Box::new(mpo(RetainForm::LastToken, Variant::Paper))),
        ("mpo mean pool", Box::new(mpo(RetainForm::MeanPool, Variant::Paper))),
        ("mpo policy dominant", Box::new(mpo(RetainForm::LastToken, Variant::PolicyDominant))),
    ];
    for (name, term) in &terms {
        check_split(name, term.as_ref(), &leaves);
    }
}

#[test]
fn stacks_split_across_ranks_equal_the_whole_batch() {
    let leaves = Leaves::new(11);
    let dpo_mlc = ObjectiveStack::new()
        .with(1.0, Dpo::new(0.1, 0.0).unwrap())
        .unwrap()
        .with(0.5, Mlc::new(Layer::Index(1), 1.0).unwrap())
        .unwrap();
    check_split("dpo + mlc", &dpo_mlc, &leaves);
    let dpo_sft =
        ObjectiveStack::new().with(1.0, Dpo::new(0.1, 0.0).unwrap()).unwrap().with(1.0, Sft::new().unwrap()).unwrap();
    check_split("dpo + sft", &dpo_sft, &leaves);
    let mpo_mlc = ObjectiveStack::new()
        .with(1.0, mpo(RetainForm::LastToken, Variant::Paper))
        .unwrap()
        .with(0.5, Mlc::new(Layer::Index(1), 1.0).unwrap())
        .unwrap();
    check_split("mpo + mlc", &mpo_mlc, &leaves);
}
