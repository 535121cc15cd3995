//! The VRM broker's security, on the embedded broker and on mosquitto with TLS, a password
//! file and bmsfw's ACL file: who can connect, subscribe and publish; and the GX's refusal
//! of a broker certificate it cannot trust, with the reason.

mod support;

use bmsfw_core::vrm::tls::{MqttCredentials, MqttSecurity, Secret, describe_connection_error};
use bmsfw_portal::pki::{Ca, Validity};
use bmsfw_vrm_wire::BrokerAddr;
use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Packet, QoS};
use std::time::Duration;
use support::free_port;
use support::secure::{SecureSite, embedded_addr};
use tokio::sync::mpsc;

const GX1: &str = "gx1";
const GX2: &str = "gx2";
/// How long a message that must not arrive is waited for, after one sent later arrived.
const QUIET: Duration = Duration::from_millis(700);

/// A client's connection attempt: connected (with its event loop) or why not.
async fn connect(
    broker: &BrokerAddr,
    security: &MqttSecurity,
) -> Result<(AsyncClient, EventLoop), ConnectionError> {
    let mut options = MqttOptions::new(
        format!("test-{}", free_port()),
        broker.host.clone(),
        broker.port,
    );
    options.set_keep_alive(Duration::from_secs(5));
    security.apply(broker, &mut options).unwrap();
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .expect("the connection attempt neither succeeded nor failed within 10 s");
    outcome.map(|()| (client, eventloop))
}

/// A connected client whose messages arrive on a channel; it subscribes to `filters`.
struct Client {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    task: tokio::task::JoinHandle<()>,
}

impl Client {
    async fn start(broker: &BrokerAddr, security: &MqttSecurity, filters: &[&str]) -> Client {
        let (client, mut eventloop) = connect(broker, security).await.expect("connects");
        let (tx, messages) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send((p.topic, p.payload.to_vec()));
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(_) => {}
                    // Refused or dropped: this client stays away (no reconnection).
                    Err(_) => return,
                }
            }
        });
        for f in filters {
            client.subscribe(*f, QoS::AtLeastOnce).await.unwrap();
            // A refused subscription closes the connection (embedded broker) or gets a
            // failure code (mosquitto): either way the wait is bounded.
            let _ = tokio::time::timeout(Duration::from_secs(3), subscribed.recv()).await;
        }
        Client {
            client,
            messages,
            task,
        }
    }

    async fn publish(&self, topic: &str, payload: &str) {
        // The connection may already be closed for a refused request: that is a refusal.
        let _ = self
            .client
            .publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec())
            .await;
    }

    /// Waits for `payload`; every message before it is returned.
    async fn until(&mut self, payload: &str) -> Vec<(String, String)> {
        let mut before = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (topic, body) = tokio::time::timeout_at(deadline, self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("{payload} did not arrive within 10 s"))
                .unwrap_or_else(|| panic!("the connection closed before {payload} arrived"));
            let body = String::from_utf8_lossy(&body).into_owned();
            if body == payload {
                return before;
            }
            before.push((topic, body));
        }
    }

    /// What arrives within [`QUIET`].
    async fn quiet(&mut self) -> Vec<(String, String)> {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(Some((t, b))) = tokio::time::timeout_at(deadline, self.messages.recv()).await {
            got.push((t, String::from_utf8_lossy(&b).into_owned()));
        }
        got
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn refused_login(e: &ConnectionError) -> bool {
    // The broker answers CONNACK "bad user name or password" / "not authorized", or closes.
    matches!(
        e,
        ConnectionError::ConnectionRefused(_)
            | ConnectionError::Io(_)
            | ConnectionError::MqttState(_)
    )
}

/// The rules, on a broker reached at `broker` whose password file is `site`'s.
async fn the_rules_hold(
    site: &SecureSite,
    broker: BrokerAddr,
    gx1: MqttCredentials,
    gx2: MqttCredentials,
) {
    // No credentials, wrong password, unknown user, a password of another user: refused.
    let wrong = MqttCredentials::new(GX1.into(), Secret::new("not-the-password-of-gx1")).unwrap();
    let unknown = MqttCredentials::new("gx9".into(), gx1.password.clone()).unwrap();
    let swapped = MqttCredentials::new(GX1.into(), gx2.password.clone()).unwrap();
    for (what, creds) in [
        ("no credentials", None),
        ("a wrong password", Some(wrong)),
        ("an unknown user", Some(unknown)),
        ("another GX's password", Some(swapped)),
    ] {
        match connect(&broker, &site.security(&broker, creds)).await {
            Ok(_) => panic!("{broker}: a client with {what} connected"),
            Err(e) => assert!(refused_login(&e), "{broker}: {what}: {e}"),
        }
    }
    // Plain MQTT on the TLS port gets nowhere.
    let plain = BrokerAddr::new("127.0.0.1", broker.port);
    let plain_security = MqttSecurity::plain(&plain, Some(gx1.clone()), false).unwrap();
    assert!(
        connect(&plain, &plain_security).await.is_err(),
        "{broker}: plain MQTT on the TLS port connected"
    );

    let portal_sec = site.portal_security(&broker);
    let mut portal = Client::start(&broker, &portal_sec, &["N/+/#", "P/+/out"]).await;
    let mut real_gx1 = Client::start(
        &broker,
        &site.security(&broker, Some(gx1.clone())),
        &["P/gx1/in", "R/gx1/#", "W/gx1/#"],
    )
    .await;

    // gx2 subscribes to gx1's requests and to everything: it receives none of them.
    let gx2_sec = site.security(&broker, Some(gx2.clone()));
    for filter in ["P/gx1/in", "R/gx1/#", "W/gx1/#", "#", "P/+/in", "N/gx1/#"] {
        let mut spy = Client::start(&broker, &gx2_sec, &[filter]).await;
        portal
            .publish("P/gx1/in", &format!("command for gx1 ({filter})"))
            .await;
        portal
            .publish("R/gx1/keepalive", &format!("keepalive ({filter})"))
            .await;
        portal
            .publish("W/gx1/x", &format!("write ({filter})"))
            .await;
        real_gx1.until(&format!("write ({filter})")).await;
        real_gx1
            .publish("N/gx1/x", &format!("value ({filter})"))
            .await;
        portal.until(&format!("value ({filter})")).await;
        let leaked = spy.quiet().await;
        assert!(
            leaked.is_empty(),
            "{broker}: gx2 subscribed to {filter} and got {leaked:?}"
        );
    }

    // gx2 publishes a command to gx1, to itself, and forges gx1's values and replies.
    for (topic, watcher) in [
        ("P/gx1/in", "gx1"),
        ("R/gx1/keepalive", "gx1"),
        ("W/gx1/x", "gx1"),
        ("N/gx1/forged", "portal"),
        ("P/gx1/out", "portal"),
    ] {
        let forger = Client::start(&broker, &gx2_sec, &[]).await;
        forger.publish(topic, &format!("forged on {topic}")).await;
        // Then a legitimate message, which arrives after the forged one would have.
        let control = format!("after {topic}");
        let before = if watcher == "gx1" {
            portal.publish("P/gx1/in", &control).await;
            real_gx1.until(&control).await
        } else {
            real_gx1.publish("N/gx1/x", &control).await;
            portal.until(&control).await
        };
        let late = if watcher == "gx1" {
            real_gx1.quiet().await
        } else {
            portal.quiet().await
        };
        let forged = format!("forged on {topic}");
        assert!(
            !before.iter().chain(late.iter()).any(|(_, b)| *b == forged),
            "{broker}: gx2's publish on {topic} reached the {watcher}"
        );
    }

    // Even the real gx1 cannot publish a request to itself: only the portal can.
    real_gx1.publish("P/gx1/in", "gx1 commands itself").await;
    let mut observer = Client::start(
        &broker,
        &site.security(&broker, Some(gx1.clone())),
        &["P/gx1/in"],
    )
    .await;
    portal.publish("P/gx1/in", "the portal's command").await;
    let before = observer.until("the portal's command").await;
    assert!(
        !before.iter().any(|(_, b)| b == "gx1 commands itself"),
        "{broker}: a GX published on its own P/<id>/in"
    );
    // And the positive case holds: a GX's own replies reach the portal.
    let gx1_again = Client::start(&broker, &site.security(&broker, Some(gx1)), &[]).await;
    gx1_again.publish("P/gx1/out", "a reply").await;
    portal.until("a reply").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_broker_enforces_credentials_and_topic_rules() {
    let site = SecureSite::new();
    let (gx1, gx2) = (site.provision(GX1), site.provision(GX2));
    let broker = site.embedded();
    the_rules_hold(&site, embedded_addr(&broker), gx1, gx2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mosquitto_with_the_shipped_acl_enforces_the_same_rules() {
    let site = SecureSite::new();
    // mosquitto reads its password file at start (and on SIGHUP).
    let (gx1, gx2) = (site.provision(GX1), site.provision(GX2));
    let broker = site.mosquitto();
    the_rules_hold(&site, broker.addr(), gx1, gx2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_or_rotated_gx_is_disconnected_and_cannot_log_in_again() {
    let site = SecureSite::new();
    let broker = site.embedded();
    let addr = embedded_addr(&broker);
    let gx1 = site.provision(GX1);
    let sec = site.security(&addr, Some(gx1.clone()));
    let client = Client::start(&addr, &sec, &["P/gx1/in"]).await;
    // Rotation: a new password; the connection made with the old one ends.
    let gx1_new = site.provision(GX1);
    tokio::time::timeout(Duration::from_secs(10), async {
        while !client.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the connection with the replaced password still runs after 10 s");
    assert!(
        connect(&addr, &sec).await.is_err(),
        "the old password still works"
    );
    let new_sec = site.security(&addr, Some(gx1_new));
    let client = Client::start(&addr, &new_sec, &["P/gx1/in"]).await;
    // Revocation.
    assert!(bmsfw_portal::provision::revoke(&site.password_file, GX1).unwrap());
    tokio::time::timeout(Duration::from_secs(10), async {
        while !client.task.is_finished() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the revoked GX's connection still runs after 10 s");
    assert!(
        connect(&addr, &new_sec).await.is_err(),
        "a revoked GX logged in"
    );
}

/// The GX's view of a broker serving `leaf`: refused, and the reason says `why`.
async fn refused_because(site: &SecureSite, leaf: bmsfw_portal::pki::Leaf, why: &str) {
    let broker = site.embedded_with(leaf.server_tls());
    let addr = BrokerAddr::tls("127.0.0.1", broker.addr().port());
    let gx1 = site.provision(GX1);
    let sec = site.security(&addr, Some(gx1));
    match connect(&addr, &sec).await {
        Ok(_) => panic!("the GX connected to a broker whose certificate {why}"),
        Err(e) => {
            let said = describe_connection_error(&addr, &e);
            assert!(said.contains("127.0.0.1"), "{said}");
            assert!(said.contains(why), "expected {why:?} in {said:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gx_refuses_a_certificate_of_another_ca_and_says_so() {
    let site = SecureSite::new();
    let other = Ca::new("someone else's CA").unwrap();
    let leaf = other
        .server(&["localhost", "127.0.0.1"], Validity::From(30))
        .unwrap();
    refused_because(&site, leaf, "not signed by the configured CA").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gx_refuses_an_expired_certificate_and_says_so() {
    let site = SecureSite::new();
    let leaf = site
        .ca
        .server(&["localhost", "127.0.0.1"], Validity::Expired)
        .unwrap();
    refused_because(&site, leaf, "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gx_refuses_a_certificate_for_another_host_and_says_so() {
    let site = SecureSite::new();
    let leaf = site
        .ca
        .server(&["vrm.example", "192.0.2.1"], Validity::From(30))
        .unwrap();
    refused_because(&site, leaf, "not valid for the name").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_right_certificate_is_accepted() {
    // The control of the three refusals above: same path, a good certificate.
    let site = SecureSite::new();
    let leaf = site
        .ca
        .server(&["localhost", "127.0.0.1"], Validity::From(30))
        .unwrap();
    let broker = site.embedded_with(leaf.server_tls());
    let addr = BrokerAddr::tls("127.0.0.1", broker.addr().port());
    let gx1 = site.provision(GX1);
    connect(&addr, &site.security(&addr, Some(gx1)))
        .await
        .unwrap();
}

#[test]
fn plain_mqtt_is_refused_off_loopback_unless_insecure() {
    let lan = BrokerAddr::new("192.0.2.10", 1883);
    assert!(MqttSecurity::plain(&lan, None, false).is_err());
    let insecure = MqttSecurity::plain(&lan, None, true).unwrap();
    assert!(insecure.warn_if_insecure(&lan, "test"));
    let lo = BrokerAddr::new("127.0.0.1", 1883);
    assert!(
        !MqttSecurity::plain(&lo, None, false)
            .unwrap()
            .warn_if_insecure(&lo, "test")
    );
    // The embedded broker refuses to serve plain MQTT off loopback.
    let r = bmsfw_portal::EmbeddedBroker::start_secure(bmsfw_portal::broker::SecureBroker {
        listen: "0.0.0.0:0".parse().unwrap(),
        tls: None,
        password_file: None,
        portal: None,
    });
    assert!(matches!(
        r,
        Err(bmsfw_portal::broker::BrokerError::PlainNotLoopback(_))
    ));
}
