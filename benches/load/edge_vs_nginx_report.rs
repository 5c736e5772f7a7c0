//! The edge-vs-nginx harness's results: each target's measured rounds, the
//! median round it reports, the markdown table and the ratios issue 19 sets
//! targets for (edge vs bare pingora, vs Apache + mod_auth_openidc, vs nginx,
//! and the p99 at a fixed offered rate vs nginx's).

use crate::fixed_rate::FixedRun;
use crate::wrk::WrkRun;

/// One closed-loop (wrk) round of a target.
pub struct Round {
    /// What wrk measured.
    pub wrk: WrkRun,
    /// CPU seconds (user + system) the proxy's processes used during it.
    pub proxy_cpu: f64,
    /// Cores busy with processes outside the benchmark, on average.
    pub other_load: f64,
}

/// One constant-rate round of a target.
pub struct FixedRound {
    /// What the constant-rate client measured.
    pub run: FixedRun,
    /// Cores busy with processes outside the benchmark, on average.
    pub other_load: f64,
}

/// Everything measured for one target.
pub struct Measured {
    /// `direct`, `nginx`, `haproxy`, `pingora`, `apache` or `edge`.
    pub name: &'static str,
    /// Whether it has proxy processes (not `direct`).
    pub is_proxy: bool,
    /// Closed-loop rounds.
    pub rounds: Vec<Round>,
    /// Constant-rate rounds.
    pub fixed: Vec<FixedRound>,
}

impl Measured {
    /// The median closed-loop round by requests/s.
    pub fn median(&self) -> Option<&Round> {
        median_by(&self.rounds, |round| round.wrk.requests_per_s)
    }

    /// The median constant-rate round by p99.
    pub fn median_fixed(&self) -> Option<&FixedRound> {
        median_by(&self.fixed, |round| round.run.p99_ms)
    }
}

fn median_by<T>(items: &[T], key: impl Fn(&T) -> f64) -> Option<&T> {
    let mut order: Vec<&T> = items.iter().collect();
    order.sort_by(|a, b| key(a).total_cmp(&key(b)));
    order.get(order.len() / 2).copied()
}

/// Prints the table and the ratios; `fixed_rate` is the offered rate of the
/// constant-rate rounds, if they ran.
pub fn print(targets: &[Measured], fixed_rate: Option<f64>) {
    let rate = fixed_rate.map_or("—".to_owned(), |r| format!("{r:.0}/s"));
    println!(
        "\n| target | requests/s | p50 | p90 | p99 | max | errors | proxy CPU per request | p99 at {rate} | \
         achieved at {rate} | errors at {rate} | other load |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for target in targets {
        let (mut closed, mut fixed) = (vec!["—".to_owned(); 7], vec!["—".to_owned(); 3]);
        let mut other = Vec::new();
        if let Some(Round { wrk: run, proxy_cpu, other_load }) = target.median() {
            let per_request = if !target.is_proxy || run.requests == 0 {
                "—".to_owned()
            } else {
                format!("{:.1} µs", proxy_cpu / run.requests as f64 * 1e6)
            };
            closed = vec![
                format!("{:.0}", run.requests_per_s),
                ms(run.p50_ms),
                ms(run.p90_ms),
                ms(run.p99_ms),
                ms(run.max_ms),
                run.errors.to_string(),
                per_request,
            ];
            other.push(format!("{other_load:.2}"));
        }
        if let Some(FixedRound { run, other_load }) = target.median_fixed() {
            fixed = vec![ms(run.p99_ms), format!("{:.0}", run.achieved_per_s), run.errors.to_string()];
            other.push(format!("{other_load:.2}"));
        }
        println!("| {} | {} | {} | {} |", target.name, closed.join(" | "), fixed.join(" | "), other.join(" / "));
    }
    print_ratios(targets);
}

fn ms(value: f64) -> String {
    format!("{value:.2} ms")
}

/// The ratios of issue 19's edge-throughput target.
fn print_ratios(targets: &[Measured]) {
    let find = |name: &str| targets.iter().find(|t| t.name == name);
    let rps = |name: &str| find(name).and_then(Measured::median).map(|r| r.wrk.requests_per_s);
    let fixed_p99 = |name: &str| find(name).and_then(Measured::median_fixed).map(|r| r.run.p99_ms);
    let verdict = |met: bool| if met { "met" } else { "MISSED" };
    println!();
    let Some(edge) = rps("edge") else {
        println!("(no edge in this run: no ratios)");
        return;
    };
    // Issue 19: edge ≥ 0.9× bare pingora, ≥ 2× Apache, ≥ 0.5× nginx (haproxy: no target).
    for (other, label, target) in [
        ("pingora", "bare pingora", Some(0.9)),
        ("apache", "Apache + mod_auth_openidc", Some(2.0)),
        ("nginx", "nginx", Some(0.5)),
        ("haproxy", "haproxy", None),
    ] {
        if let Some(base) = rps(other) {
            let ratio = edge / base;
            let goal = target.map_or(String::new(), |t| format!(" (target ≥ {t:.1}: {})", verdict(ratio >= t)));
            println!("edge / {label} requests/s: {ratio:.2}{goal}");
        }
    }
    if let (Some(edge), Some(nginx)) = (fixed_p99("edge"), fixed_p99("nginx")) {
        let ratio = edge / nginx;
        println!("edge / nginx p99 at the fixed rate: {ratio:.2} (target ≤ 1.2: {})", verdict(ratio <= 1.2));
    }
    let cpu = |name: &str| {
        find(name)
            .and_then(Measured::median)
            .filter(|r| r.wrk.requests > 0)
            .map(|r| r.proxy_cpu / r.wrk.requests as f64)
    };
    let cpu_ratios: Vec<String> = ["nginx", "haproxy", "pingora", "apache"]
        .iter()
        .filter_map(|name| Some(format!("{:.2}× {name}", cpu("edge")? / cpu(name)?)))
        .collect();
    if !cpu_ratios.is_empty() {
        println!("edge CPU per request: {}", cpu_ratios.join(", "));
    }
}
