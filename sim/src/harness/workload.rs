//! Workload clients: turmoil clients (never crashed) that run register, bank and list-append
//! operations against random nodes through the gateway, recording every operation with
//! simulated time. A timed-out operation is `info` and the client continues as a new process.

use std::rc::Rc;
use std::time::Duration;

use rand::Rng;
use rand::rngs::StdRng;

use super::config::INITIAL_BALANCE;
use super::gateway::{self, GATEWAY_PORT, GwRequest, GwResponse};
use super::node::host_name;
use super::rng::{self, Stream};
use super::world::World;
use crate::checkers::durability::FinalState;
use crate::history::{Mop, Op};

/// Connect timeout of a client (a connect to a crashed host hangs until it restarts).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(300);

/// The answer to one call, as the client saw it.
#[derive(Debug)]
pub enum Outcome {
    /// The gateway answered.
    Answer(GwResponse),
    /// Never sent (connect failed): definitely not applied.
    NotSent(String),
    /// Sent, no answer in time or the connection broke: unknown.
    Lost(String),
}

fn sim_now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// One request to node `node`'s gateway under `timeout`.
pub async fn call(node: u64, request: &GwRequest, timeout: Duration) -> Outcome {
    let addr = format!("{}:{GATEWAY_PORT}", host_name(node));
    let mut stream =
        match tokio::time::timeout(CONNECT_TIMEOUT, turmoil::net::TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Outcome::NotSent(e.to_string()),
            Err(_) => return Outcome::NotSent("connect timed out".to_owned()),
        };
    let exchange = async {
        gateway::write_frame(&mut stream, request).await?;
        gateway::read_frame::<_, GwResponse>(&mut stream).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(Some(r))) => Outcome::Answer(r),
        Ok(Ok(None)) => Outcome::Lost("connection closed".to_owned()),
        Ok(Err(e)) => Outcome::Lost(e.to_string()),
        Err(_) => Outcome::Lost(format!("no answer within {timeout:?}")),
    }
}

struct Client {
    world: Rc<World>,
    index: u64,
    rng: StdRng,
    process: u64,
    counter: u64,
}

impl Client {
    fn who(&self) -> String {
        format!("c{}", self.index)
    }

    fn unique(&mut self) -> u64 {
        self.counter += 1;
        ((self.index + 1) << 32) | self.counter
    }

    fn pick_node(&mut self) -> u64 {
        self.rng.gen_range(1..=self.world.cfg.nodes)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.world.cfg.op_timeout_ms)
    }

    /// Runs a history op (register or list-append) and records it.
    async fn history_op(&mut self, node: u64, op: Op) -> bool {
        let world = Rc::clone(&self.world);
        let handle =
            match world
                .recorder
                .lock()
                .invoke_on(self.process, Some(node), op.clone(), sim_now())
            {
                Ok(h) => h,
                Err(e) => {
                    world.log(&self.who(), &format!("recorder refused an invoke: {e}"));
                    return false;
                }
            };
        let outcome = call(node, &GwRequest::Op(op.clone()), self.timeout()).await;
        let now = sim_now();
        let (kind, ok) = match outcome {
            Outcome::Answer(GwResponse::Ok(done)) => {
                let r = world.recorder.lock().ok(handle, done, now);
                if let Err(e) = r {
                    world.log(&self.who(), &format!("recorder refused a completion: {e}"));
                }
                world.count(|c| c.ok += 1);
                ("ok", true)
            }
            Outcome::Answer(GwResponse::Fail(_)) | Outcome::NotSent(_) => {
                let _ = world.recorder.lock().fail(handle, now);
                world.count(|c| c.fail += 1);
                ("fail", false)
            }
            Outcome::Answer(_) | Outcome::Lost(_) => {
                let _ = world.recorder.lock().info(handle, now);
                world.count(|c| c.info += 1);
                // Jepsen's convention: the hung process never returns; continue as a new one.
                self.process += world.cfg.clients + 1;
                ("info", false)
            }
        };
        world.log(&self.who(), &format!("{} n{node} {kind}", op.f()));
        ok
    }

    /// A read through node 1 recorded in the history; the completed op if it succeeded.
    async fn final_read(&mut self, op: Op) -> Option<Op> {
        let world = Rc::clone(&self.world);
        let handle = world
            .recorder
            .lock()
            .invoke_on(self.process, Some(1), op.clone(), sim_now())
            .ok()?;
        let outcome = call(1, &GwRequest::Op(op.clone()), self.timeout()).await;
        let now = sim_now();
        match outcome {
            Outcome::Answer(GwResponse::Ok(done)) => {
                let _ = world.recorder.lock().ok(handle, done.clone(), now);
                world.count(|c| c.ok += 1);
                Some(done)
            }
            Outcome::Answer(GwResponse::Fail(_)) | Outcome::NotSent(_) => {
                let _ = world.recorder.lock().fail(handle, now);
                world.count(|c| c.fail += 1);
                None
            }
            _ => {
                let _ = world.recorder.lock().info(handle, now);
                world.count(|c| c.info += 1);
                self.process += world.cfg.clients + 1;
                None
            }
        }
    }

    async fn register(&mut self) {
        let node = self.pick_node();
        let key = self.rng.gen_range(0..self.world.cfg.register_keys);
        let op = if self.rng.gen_bool(0.5) {
            Op::Read { key, value: None }
        } else {
            Op::Write {
                key,
                value: self.unique(),
            }
        };
        self.history_op(node, op).await;
    }

    async fn list_append(&mut self) {
        let node = self.pick_node();
        let n = self.rng.gen_range(1..=3);
        let mut mops = Vec::with_capacity(n);
        for _ in 0..n {
            let key = self.rng.gen_range(0..self.world.cfg.list_keys);
            if self.rng.gen_bool(0.5) {
                mops.push(Mop::ReadList { key, value: None });
            } else {
                let value = self.unique();
                mops.push(Mop::Append { key, value });
            }
        }
        self.history_op(node, Op::Txn(mops)).await;
    }

    /// Records a bank operation after the fact in the bank history: invoked at `invoked`,
    /// completed now with `op` (the reads and writes it did) or as fail / info.
    fn record_bank(&mut self, invoked: Duration, op: Op, kind: &str) {
        let world = Rc::clone(&self.world);
        let mut rec = world.bank.lock();
        let Ok(handle) = rec.invoke(self.process, op.clone(), invoked) else {
            return;
        };
        let now = sim_now();
        let _ = match kind {
            "ok" => rec.ok(handle, op, now),
            "fail" => rec.fail(handle, now),
            _ => rec.info(handle, now),
        };
        drop(rec);
        match kind {
            "ok" => world.count(|c| c.ok += 1),
            "fail" => world.count(|c| c.fail += 1),
            _ => {
                world.count(|c| c.info += 1);
                self.process += world.cfg.clients + 1;
            }
        }
    }

    async fn bank(&mut self) {
        let node = self.pick_node();
        let accounts = self.world.cfg.accounts;
        let invoked = sim_now();
        if self.rng.gen_bool(0.3) {
            let outcome = call(node, &GwRequest::BankRead { accounts }, self.timeout()).await;
            let reads = |values: Option<&Vec<u64>>| {
                Op::Txn(
                    (0..accounts)
                        .map(|key| Mop::RegRead {
                            key,
                            value: values.and_then(|v| v.get(key as usize).copied()),
                        })
                        .collect(),
                )
            };
            let kind = match &outcome {
                Outcome::Answer(GwResponse::Balances(b)) => {
                    self.record_bank(invoked, reads(Some(b)), "ok");
                    "ok"
                }
                Outcome::Answer(GwResponse::Fail(_)) | Outcome::NotSent(_) => {
                    self.record_bank(invoked, reads(None), "fail");
                    "fail"
                }
                _ => {
                    self.record_bank(invoked, reads(None), "info");
                    "info"
                }
            };
            self.world
                .log(&self.who(), &format!("bank-read n{node} {kind}"));
            return;
        }
        let from = self.rng.gen_range(0..accounts);
        let to = (from + self.rng.gen_range(1..accounts.max(2))) % accounts;
        let amount = self.rng.gen_range(1..=INITIAL_BALANCE / 2);
        let outcome = call(
            node,
            &GwRequest::Transfer { from, to, amount },
            self.timeout(),
        )
        .await;
        let unknown = Op::Txn(vec![
            Mop::RegRead {
                key: from,
                value: None,
            },
            Mop::RegRead {
                key: to,
                value: None,
            },
        ]);
        let what = match outcome {
            Outcome::Answer(GwResponse::Transferred { read, moved }) => {
                let mut mops = vec![
                    Mop::RegRead {
                        key: from,
                        value: Some(read.0),
                    },
                    Mop::RegRead {
                        key: to,
                        value: Some(read.1),
                    },
                ];
                if moved {
                    mops.push(Mop::RegWrite {
                        key: from,
                        value: read.0 - amount,
                    });
                    mops.push(Mop::RegWrite {
                        key: to,
                        value: read.1 + amount,
                    });
                }
                self.record_bank(invoked, Op::Txn(mops), "ok");
                if moved { "moved" } else { "insufficient" }
            }
            Outcome::Answer(GwResponse::Fail(_)) | Outcome::NotSent(_) => {
                self.record_bank(invoked, unknown, "fail");
                "fail"
            }
            _ => {
                self.record_bank(invoked, unknown, "info");
                "info"
            }
        };
        self.world.log(
            &self.who(),
            &format!("transfer n{node} {from}->{to} {amount} {what}"),
        );
    }
}

/// Creates the collections and accounts, retrying on every node until it succeeds.
async fn setup(world: &World) {
    let request = GwRequest::Setup {
        accounts: world.cfg.accounts,
        initial: INITIAL_BALANCE,
    };
    let mut node = 1;
    loop {
        if world.liveness.get() && world.ready.get() {
            return;
        }
        match call(
            node,
            &request,
            Duration::from_millis(world.cfg.op_timeout_ms),
        )
        .await
        {
            Outcome::Answer(GwResponse::SetupDone) => {
                world.log("c0", &format!("setup done via n{node}"));
                world.ready.set(true);
                return;
            }
            other => {
                world.log("c0", &format!("setup via n{node}: {}", brief(&other)));
            }
        }
        node = node % world.cfg.nodes + 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn brief(o: &Outcome) -> &'static str {
    match o {
        Outcome::Answer(GwResponse::Fail(_)) => "fail",
        Outcome::Answer(GwResponse::Info(_)) | Outcome::Lost(_) => "info",
        Outcome::NotSent(_) => "not sent",
        Outcome::Answer(_) => "unexpected answer",
    }
}

/// The body of workload client `index`.
pub async fn client(world: Rc<World>, index: u64) -> turmoil::Result {
    if index == 0 {
        setup(&world).await;
    } else {
        while !world.ready.get() && !world.stop.get() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let mut c = Client {
        rng: rng::rng(world.cfg.seed, Stream::Workload, index),
        world: Rc::clone(&world),
        index,
        process: index,
        counter: 0,
    };
    let mix = world.cfg.mix.clone();
    let total = mix.register + mix.bank + mix.list_append;
    while !world.stop.get() {
        let think = c.rng.gen_range(0..=world.cfg.think_ms);
        tokio::time::sleep(Duration::from_millis(think)).await;
        if world.stop.get() {
            break;
        }
        let draw = c.rng.gen_range(0..total.max(1));
        if draw < mix.register {
            c.register().await;
        } else if draw < mix.register + mix.bank {
            c.bank().await;
        } else {
            c.list_append().await;
        }
    }
    world.clients_done.set(world.clients_done.get() + 1);
    Ok(())
}

/// The liveness probe: once the faults are healed and the workload stopped, a fresh write
/// through every node and a linearizable read of it through every node must succeed (each
/// retried until it does; the harness bounds the phase), then one final read of every key.
pub async fn probe(world: Rc<World>, process: u64) -> turmoil::Result {
    while !(world.liveness.get() && world.clients_done.get() == world.cfg.clients) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !world.ready.get() {
        setup(&world).await;
    }
    world.log("prb", "probe start");
    let mut c = Client {
        rng: rng::rng(world.cfg.seed, Stream::Workload, u64::MAX),
        world: Rc::clone(&world),
        index: process,
        process,
        counter: 0,
    };
    let fresh_key = world.cfg.register_keys; // a key the workload never touched
    for node in world.cfg.node_ids() {
        let value = c.unique();
        while !c
            .history_op(
                node,
                Op::Write {
                    key: fresh_key,
                    value,
                },
            )
            .await
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for reader in world.cfg.node_ids() {
            while !c
                .history_op(
                    reader,
                    Op::Read {
                        key: fresh_key,
                        value: None,
                    },
                )
                .await
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // Final reads of everything the workload touched (durability of acknowledged writes).
    let mut state = FinalState::default();
    for key in 0..world.cfg.register_keys {
        loop {
            if let Some(Op::Read { value, .. }) = c.final_read(Op::Read { key, value: None }).await
            {
                state.registers.insert(key, value);
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let mops: Vec<Mop> = (0..world.cfg.list_keys)
        .map(|key| Mop::ReadList { key, value: None })
        .collect();
    loop {
        if let Some(Op::Txn(done)) = c.final_read(Op::Txn(mops.clone())).await {
            for m in done {
                if let Mop::ReadList { key, value } = m {
                    state.lists.insert(key, value.unwrap_or_default());
                }
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *world.final_state.borrow_mut() = Some(state);
    world.log("prb", "probe done");
    world.probe_done.set(Some(world.now_ms()));
    Ok(())
}
