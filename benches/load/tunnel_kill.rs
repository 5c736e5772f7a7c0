//! Part 3 of the `tunnel_flows` harness: kill latency. Thousands of TCP
//! flows open through one edge, every user terminated through the admin
//! API, and each flow's time from its user's answer to the client seeing
//! the close (see the harness's own documentation for the figures it
//! prints and the target).

use super::*;

/// A terminate call: when it was sent and answered.
struct Call {
    sent: Instant,
    answered: Instant,
}

/// `later - earlier` in milliseconds, negative when `later` came first.
fn signed_ms(later: Instant, earlier: Instant) -> f64 {
    match later.checked_duration_since(earlier) {
        Some(d) => d.as_secs_f64() * 1e3,
        None => -(earlier - later).as_secs_f64() * 1e3,
    }
}

/// Waits until `pid` uses under 5% of a CPU over half a second (at most a
/// minute); returns how long that took.
async fn settle(pid: u32) -> Duration {
    let started = Instant::now();
    let mut last = processes::cpu_seconds(pid);
    while started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = processes::cpu_seconds(pid);
        if now - last < 0.025 {
            break;
        }
        last = now;
    }
    started.elapsed()
}

/// Resident memory of `pid`, MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

pub(super) async fn kill(args: &Args, plane: &ControlPlane, edge: &Edge, echo: u16) -> Result<()> {
    let sessions = create_sessions(plane, "user", args.users, args.sessions_per_user).await?;
    let flows = sessions.len() * args.flows_per_session;
    let rss_before = rss_mib(edge.pid());
    let started = Instant::now();
    let opened = stream::iter((0..flows).map(|i| {
        let session = &sessions[i % sessions.len()];
        let route = Route { edge: edge.port, target: ECHO, token: session.token.clone() };
        async move {
            let mut stream = open(Some(&route), echo).await.with_context(|| format!("flow {i}"))?;
            stream.write_all(b"x").await?;
            let mut back = [0u8; 1];
            stream.read_exact(&mut back).await?;
            let closed = tokio::spawn(async move {
                let mut buf = [0u8; 16];
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return Instant::now(),
                        Ok(_) => {}
                    }
                }
            });
            anyhow::Ok((session.user, closed))
        }
    }));
    let watched: Vec<(usize, JoinHandle<Instant>)> =
        opened.buffered(64).collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?;
    let opened_in = started.elapsed();
    // The control plane writes a flow.open audit entry per flow as the edge
    // reports them; terminations measured while it is still at that would
    // measure its backlog. Wait until it is idle.
    let settled_in = settle(plane.pid()).await;
    let open_flows = edge.metric_sum("portcullis_edge_tunnel_open_flows").await?;
    println!(
        "\n## Kill latency: {} flows open on one edge ({} users × {} sessions × {} flows), edge RSS {:.0} → {:.0} MiB\n",
        watched.len(),
        args.users,
        args.sessions_per_user,
        args.flows_per_session,
        rss_before,
        rss_mib(edge.pid())
    );
    println!(
        "opened in {:.1} s; the control plane was idle again (audit entries written) {:.1} s later\n",
        opened_in.as_secs_f64(),
        settled_in.as_secs_f64()
    );
    if open_flows as usize != watched.len() {
        bail!("the edge reports {open_flows} open flows, expected {}", watched.len());
    }
    let kills_before = edge.metric_sum("portcullis_edge_kills_total").await?;
    let cpu_before = [edge.pid(), plane.pid(), std::process::id()].map(processes::cpu_seconds);
    let kill_started = Instant::now();
    let calls = stream::iter((0..args.users).map(|user| async move {
        let body = json!({"email": email("user", user), "reason": "tunnel kill-latency bench"});
        let sent = Instant::now();
        let response = plane.post("/users/terminate", &body).send().await?;
        let answered = Instant::now();
        let status = response.status();
        let answer: Value = response.json().await?;
        if !status.is_success() {
            bail!("users/terminate: {status} {answer}");
        }
        anyhow::Ok(Call { sent, answered })
    }));
    let calls: Vec<Call> =
        calls.buffered(args.callers.max(1)).collect::<Vec<_>>().await.into_iter().collect::<Result<_>>()?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.close_timeout);
    let (mut from_answer, mut from_sent) = (Vec::new(), Vec::new());
    for (user, closed) in watched {
        if let Ok(Ok(at)) = tokio::time::timeout_at(deadline, closed).await {
            from_answer.push(signed_ms(at, calls[user].answered));
            from_sent.push(signed_ms(at, calls[user].sent));
        }
    }
    let kill_wall = kill_started.elapsed().as_secs_f64();
    let cpu = [edge.pid(), plane.pid(), std::process::id()].map(processes::cpu_seconds);
    let kills = edge.metric_sum("portcullis_edge_kills_total").await? - kills_before;
    let mut answer: Vec<f64> = calls.iter().map(|c| signed_ms(c.answered, c.sent)).collect();
    for samples in [&mut from_answer, &mut from_sent, &mut answer] {
        samples.sort_by(f64::total_cmp);
    }
    let p = percentile;
    println!("| from | flows | closed | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, s) in [("the API's answer", &from_answer), ("the call being sent", &from_sent)] {
        println!(
            "| {name} | {flows} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            s.len(),
            p(s, 0.5),
            p(s, 0.9),
            p(s, 0.99),
            p(s, 1.0)
        );
    }
    println!(
        "\nusers/terminate answered in p50 {:.1} ms, p99 {:.1} ms; the edge counted {kills} kills",
        p(&answer, 0.5),
        p(&answer, 0.99)
    );
    println!(
        "from the first call to the last close: {kill_wall:.2} s; CPU seconds meanwhile: edge {:.2}, control plane {:.2}, \
         this harness (clients and upstreams) {:.2}",
        cpu[0] - cpu_before[0],
        cpu[1] - cpu_before[1],
        cpu[2] - cpu_before[2]
    );
    let met = from_answer.len() == flows && p(&from_answer, 0.99) <= 100.0;
    println!("target p99 ≤ 100 ms from the answer, every flow closed: {}", if met { "met" } else { "MISSED" });
    Ok(())
}
