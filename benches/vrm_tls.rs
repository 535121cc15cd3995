//! What TLS adds to the VRM link, per firmware chunk.
//!
//! Run with `cargo bench --bench vrm_tls` (release). Two embedded brokers, both behind the
//! gate (credentials and topic rules checked on every packet), one with TLS and one plain
//! on loopback, so the difference is TLS alone. Through each, a portal client (user
//! vrm.portal) publishes chunk messages of the default chunk size (16 KiB of firmware, as
//! base64 JSON: about 22 KiB) on `P/<id>/in`, QoS 1, one at a time, and a GX client (its
//! own credentials) receives each before the next leaves. Reported, per chunk:
//! - the latency from publish to receipt (median and 95th percentile);
//! - the CPU time of the whole process (both clients, the gate, rumqttd), from
//!   `getrusage(RUSAGE_SELF)`, so both ends of the link and the broker together.
//!
//! `BMSFW_BENCH_CHUNKS` sets the number of chunks (default 2000).

use bmsfw_core::vrm::tls::{MqttCredentials, MqttSecurity, PORTAL_USERNAME, Secret};
use bmsfw_portal::broker::{EmbeddedBroker, SecureBroker};
use bmsfw_portal::pki::{Ca, Validity};
use bmsfw_vrm_wire::BrokerAddr;
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::time::{Duration, Instant};

const GX: &str = "benchgx";
const CHUNK_TEXT: usize = 16 * 1024 * 4 / 3 + 200;

fn cpu() -> Duration {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

async fn client(
    broker: &BrokerAddr,
    security: &MqttSecurity,
    id: &str,
) -> (AsyncClient, EventLoop) {
    let mut o = MqttOptions::new(id, broker.host.clone(), broker.port);
    o.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    security.apply(broker, &mut o).unwrap();
    let (c, mut ev) = AsyncClient::new(o, 64);
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Incoming(Packet::ConnAck(_)) = ev.poll().await.expect("connects") {
                return;
            }
        }
    })
    .await
    .expect("connected within 10 s");
    (c, ev)
}

struct Figures {
    median: Duration,
    p95: Duration,
    cpu_per_chunk: Duration,
}

async fn run(broker: BrokerAddr, portal: MqttSecurity, gx: MqttSecurity, chunks: usize) -> Figures {
    let (gx_client, mut gx_ev) = client(&broker, &gx, "bench-gx").await;
    gx_client
        .subscribe(format!("P/{GX}/in"), QoS::AtLeastOnce)
        .await
        .unwrap();
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = gx_ev.poll().await.unwrap() {
            break;
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(e) = gx_ev.poll().await {
            if let Event::Incoming(Packet::Publish(_)) = e {
                let _ = tx.send(Instant::now());
            }
        }
    });
    let (portal_client, mut portal_ev) = client(&broker, &portal, "bench-portal").await;
    tokio::spawn(async move { while portal_ev.poll().await.is_ok() {} });
    let payload = vec![b'A'; CHUNK_TEXT];
    let mut latencies = Vec::with_capacity(chunks);
    // Warm up, then measure.
    for round in 0..2 {
        let n = if round == 0 { 50 } else { chunks };
        let cpu0 = cpu();
        latencies.clear();
        for _ in 0..n {
            let sent = Instant::now();
            portal_client
                .publish(
                    format!("P/{GX}/in"),
                    QoS::AtLeastOnce,
                    false,
                    payload.clone(),
                )
                .await
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .expect("a chunk arrives within 10 s")
                .unwrap();
            latencies.push(got - sent);
        }
        if round == 1 {
            let spent = cpu() - cpu0;
            latencies.sort();
            return Figures {
                median: latencies[n / 2],
                p95: latencies[n * 95 / 100],
                cpu_per_chunk: spent / n as u32,
            };
        }
    }
    unreachable!()
}

fn main() {
    let chunks: usize = std::env::var("BMSFW_BENCH_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let dir = tempfile::tempdir().unwrap();
    let passwd = dir.path().join("passwd");
    let creds = |user: &str| {
        let out = dir.path().join(format!("{user}.toml"));
        bmsfw_portal::provision::provision(&passwd, user, &out).unwrap();
        MqttCredentials::load(&out).unwrap()
    };
    let (portal_creds, gx_creds) = (creds(PORTAL_USERNAME), creds(GX));
    let ca = Ca::new("bench CA").unwrap();
    let leaf = ca.server(&["127.0.0.1"], Validity::From(1)).unwrap();
    let start = |tls| {
        EmbeddedBroker::start_secure(SecureBroker {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls,
            password_file: Some(passwd.clone()),
            portal: Some(Secret::new(portal_creds.password.expose())),
        })
        .unwrap()
    };
    let plain_broker = start(None);
    let tls_broker = start(Some(leaf.server_tls()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let plain_addr = plain_broker.url();
    let tls_addr = BrokerAddr::tls("127.0.0.1", tls_broker.addr().port());
    let plain = rt.block_on(run(
        plain_addr.clone(),
        MqttSecurity::plain(&plain_addr, Some(portal_creds.clone()), false).unwrap(),
        MqttSecurity::plain(&plain_addr, Some(gx_creds.clone()), false).unwrap(),
        chunks,
    ));
    let tls = rt.block_on(run(
        tls_addr.clone(),
        MqttSecurity::with_ca_der(&tls_addr, &[ca.der()], Some(portal_creds)).unwrap(),
        MqttSecurity::with_ca_der(&tls_addr, &[ca.der()], Some(gx_creds)).unwrap(),
        chunks,
    ));
    println!("VRM link, {chunks} chunks of {CHUNK_TEXT} bytes, QoS 1, one at a time");
    println!("            latency median   p95        CPU per chunk (both ends + broker)");
    for (name, f) in [("plain", &plain), ("TLS", &tls)] {
        println!(
            "{name:<11} {:>10.1?}   {:>10.1?}   {:>10.1?}",
            f.median, f.p95, f.cpu_per_chunk
        );
    }
    println!(
        "TLS adds    {:>10.1?}   {:>10.1?}   {:>10.1?}",
        tls.median.saturating_sub(plain.median),
        tls.p95.saturating_sub(plain.p95),
        tls.cpu_per_chunk.saturating_sub(plain.cpu_per_chunk)
    );
}
