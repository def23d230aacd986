//! AdamW's update pinned against a hand-written f64 transcription of PyTorch's algorithm
//! (`torch.optim.AdamW`, decoupled decay), step by step, for both parameter groups.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use gclip_train::optim::{AdamW, AdamWParams};

/// PyTorch's AdamW for one scalar parameter, in f64: (new p, m, v).
fn torch_adamw(
    (p, m, v): (f64, f64, f64),
    g: f64,
    t: i32,
    lr: f64,
    h: &AdamWParams,
    decay: bool,
) -> (f64, f64, f64) {
    let p = if decay {
        p * (1.0 - lr * h.weight_decay)
    } else {
        p
    };
    let m = h.beta1 * m + (1.0 - h.beta1) * g;
    let v = h.beta2 * v + (1.0 - h.beta2) * g * g;
    let bc1 = 1.0 - h.beta1.powi(t);
    let bc2 = 1.0 - h.beta2.powi(t);
    let denom = v.sqrt() / bc2.sqrt() + h.eps;
    (p - lr / bc1 * m / denom, m, v)
}

fn values(v: &Var) -> Vec<f32> {
    v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn three_steps_follow_torch_for_both_groups() {
    let h = AdamWParams {
        beta1: 0.9,
        beta2: 0.98,
        eps: 1e-6,
        weight_decay: 0.2,
    };
    let dev = Device::Cpu;
    let w0 = [0.5f32, -1.25, 2.0, 0.0, 3.5, -0.75];
    let b0 = [0.1f32, -0.2, 0.3];
    let w = Var::from_tensor(&Tensor::new(&w0, &dev).unwrap().reshape((2, 3)).unwrap()).unwrap();
    let b = Var::from_tensor(&Tensor::new(&b0, &dev).unwrap()).unwrap();
    let vars = vec![
        ("w".to_string(), w.clone()),
        ("bias".to_string(), b.clone()),
    ];
    let mut opt = AdamW::new(vars, h, |name, rank| rank < 2 || name.contains("bias")).unwrap();
    let groups: Vec<(&str, bool)> = opt.groups().collect();
    assert_eq!(groups, vec![("w", true), ("bias", false)]);

    // Gradients that change sign and size between steps, so both moments matter.
    let grads_w = [
        [0.3f32, -0.1, 0.05, 2.0, -4.0, 1e-4],
        [-0.2, 0.4, 0.05, -1.0, 3.0, 0.0],
        [0.1, 0.1, -0.5, 0.5, -2.0, 1e-3],
    ];
    let grads_b = [[1.0f32, -0.5, 0.0], [0.25, 0.75, -2.0], [-1.0, 0.0, 0.5]];
    let lrs = [1e-2, 5e-3, 2e-2];

    let mut want_w: Vec<(f64, f64, f64)> = w0.iter().map(|&x| (x as f64, 0.0, 0.0)).collect();
    let mut want_b: Vec<(f64, f64, f64)> = b0.iter().map(|&x| (x as f64, 0.0, 0.0)).collect();
    let mut worst = 0f64;
    for step in 0..3 {
        let before_w = values(&w);
        let before_b = values(&b);
        let mut grads = BTreeMap::new();
        grads.insert(
            "w".to_string(),
            Tensor::new(&grads_w[step], &dev)
                .unwrap()
                .reshape((2, 3))
                .unwrap(),
        );
        grads.insert(
            "bias".to_string(),
            Tensor::new(&grads_b[step], &dev).unwrap(),
        );
        opt.step(&grads, lrs[step]).unwrap();
        let t = step as i32 + 1;
        for (i, s) in want_w.iter_mut().enumerate() {
            *s = torch_adamw(*s, grads_w[step][i] as f64, t, lrs[step], &h, true);
        }
        for (i, s) in want_b.iter_mut().enumerate() {
            *s = torch_adamw(*s, grads_b[step][i] as f64, t, lrs[step], &h, false);
        }
        // Compare the update (after - before), not the parameters, so that a wrong step of
        // size 1e-3 cannot hide behind parameters of size 1.
        let got_w = values(&w);
        let got_b = values(&b);
        let pairs = got_w
            .iter()
            .zip(&before_w)
            .zip(&want_w)
            .chain(got_b.iter().zip(&before_b).zip(&want_b));
        for ((&got, &before), want) in pairs {
            let du = got as f64 - before as f64;
            let dw = want.0 - before as f64;
            let err = (du - dw).abs() / dw.abs().max(1e-6);
            worst = worst.max(err);
            assert!(
                err < 1e-4,
                "step {t}: update {du} vs torch {dw} (rel err {err})"
            );
        }
    }
    eprintln!("worst relative update error {worst:e}");
    assert_eq!(opt.step_count(), 3);
    // Parameters are f32: an update of 1e-2 on a value of 3.5 is only resolved to ~3e-5
    // relative (7e-5 is reached here), so 1e-4 is the tight bound.
    assert!(worst < 1e-4, "worst relative update error {worst}");
}

#[test]
fn a_variable_without_gradient_is_left_alone_and_resume_continues_identically() {
    let h = AdamWParams::default();
    let dev = Device::Cpu;
    let make = || {
        let a = Var::from_tensor(&Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev).unwrap()).unwrap();
        let c = Var::from_tensor(&Tensor::new(&[[5f32, 6.0]], &dev).unwrap()).unwrap();
        (a, c)
    };
    let grad = |x: f32| {
        let mut g = BTreeMap::new();
        g.insert(
            "a".to_string(),
            Tensor::new(&[[x, -x], [0.5 * x, 2.0]], &dev).unwrap(),
        );
        g
    };
    let (a, c) = make();
    let mut opt = AdamW::new(
        vec![("a".to_string(), a.clone()), ("c".to_string(), c.clone())],
        h,
        |_, _| false,
    )
    .unwrap();
    opt.step(&grad(1.0), 1e-2).unwrap();
    assert_eq!(
        values(&c),
        vec![5.0, 6.0],
        "no gradient, no decay, no update"
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("opt.safetensors");
    opt.save(&state).unwrap();
    opt.step(&grad(-3.0), 1e-2).unwrap();
    let continued = values(&a);

    // A fresh optimizer over the same parameters restored from the saved state.
    let (a2, c2) = make();
    let mut fresh = AdamW::new(
        vec![("a".to_string(), a2.clone()), ("c".to_string(), c2)],
        h,
        |_, _| false,
    )
    .unwrap();
    fresh.step(&grad(1.0), 1e-2).unwrap(); // reproduce the parameters after step 1
    fresh.load(&state).unwrap();
    fresh.step(&grad(-3.0), 1e-2).unwrap();
    assert_eq!(fresh.step_count(), 2);
    assert_eq!(values(&a2), continued);
}
