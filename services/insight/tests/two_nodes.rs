//! Two real `anju-server` processes, each with its own log and its own site, publish to
//! one nats-server; one real `anju-insight` consumes both. After submissions and
//! caseworker work on both nodes, insight's ManagerService answers equal the nodes' own:
//! per site exactly, and its province totals are the sums of the nodes' totals. insight
//! is killed with SIGKILL mid-stream and restarted: still equal, nothing counted twice.

mod support;

use std::time::Duration;

use anju_auth::Role;
use anju_proto::v1::manager_service_client::ManagerServiceClient;
use anju_proto::v1::*;
use anju_testkit::NatsServer;
use support::*;
use tonic::transport::Channel;

const SITE_A: &str = "site-a";
const SITE_B: &str = "site-b";

/// Submits `count` repair requests at the node's site and works them: left waiting,
/// accepted, refused, fulfilled and rated well, fulfilled and rated badly.
async fn drive(node: &Node, site: &str, from: u64, count: u64) {
    let mut actors = Actors::new(node, site);
    for n in from..from + count {
        let request = repair(site, &format!("two-nodes-{site}"), n);
        let phone = request.applicant.as_ref().unwrap().phone.clone();
        let submitted = actors
            .resident
            .submit_request(authed(request, &actors.resident_token))
            .await
            .expect("submit")
            .into_inner();
        let id = submitted.request_id.clone();
        let cw = actors.caseworker_token.clone();
        let caseworker = &mut actors.caseworker;
        if n % 5 == 0 {
            continue;
        }
        caseworker
            .claim_request(authed(
                ClaimRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &cw,
            ))
            .await
            .expect("claim");
        if n % 5 == 2 {
            caseworker
                .refuse_request(authed(
                    RefuseRequestRequest {
                        request_id: id.clone(),
                        reason: "不属于本社区维修范围".into(),
                        legal_basis: "社区维修服务规程第三条".into(),
                        ..Default::default()
                    },
                    &cw,
                ))
                .await
                .expect("refuse");
            continue;
        }
        caseworker
            .accept_request(authed(
                AcceptRequestRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &cw,
            ))
            .await
            .expect("accept");
        if n % 5 == 1 {
            continue;
        }
        caseworker
            .approve_request(authed(
                ApproveRequestRequest {
                    request_id: id.clone(),
                    level: 0,
                    ..Default::default()
                },
                &cw,
            ))
            .await
            .expect("review (no approval levels)");
        caseworker
            .start_fulfilment(authed(
                StartFulfilmentRequest {
                    request_id: id.clone(),
                    ..Default::default()
                },
                &cw,
            ))
            .await
            .expect("start fulfilment");
        for step in ["inspect", "repair", "check"] {
            caseworker
                .complete_fulfilment_step(authed(
                    CompleteFulfilmentStepRequest {
                        request_id: id.clone(),
                        step_code: step.into(),
                        ..Default::default()
                    },
                    &cw,
                ))
                .await
                .expect("complete a step");
        }
        let grade = if n % 5 == 3 {
            SatisfactionGrade::Satisfied
        } else {
            SatisfactionGrade::Dissatisfied
        };
        actors
            .resident
            .rate_request(authed(
                RateRequestRequest {
                    tracking_code: submitted.tracking_code.clone(),
                    phone_last4: phone[phone.len() - 4..].to_string(),
                    grade: grade as i32,
                    ..Default::default()
                },
                &actors.resident_token,
            ))
            .await
            .expect("rate");
    }
}

fn filter(sites: &[&str]) -> Option<ReportFilter> {
    Some(ReportFilter {
        site_ids: sites.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

/// Every report of one ManagerService, for `sites` (empty: the token's whole scope),
/// grouped by site when `by_site`.
#[derive(Debug, Clone, PartialEq)]
struct Reports {
    throughput: GetThroughputResponse,
    lead_times: GetLeadTimesResponse,
    sla: GetSlaReportResponse,
    satisfaction: GetSatisfactionResponse,
    backlog: GetBacklogResponse,
}

async fn reports(channel: &Channel, token: &str, sites: &[&str], by_site: bool) -> Reports {
    let mut client = ManagerServiceClient::new(channel.clone());
    let grouping = (if by_site {
        ReportGrouping::Site
    } else {
        ReportGrouping::None
    }) as i32;
    Reports {
        throughput: client
            .get_throughput(authed(
                GetThroughputRequest {
                    filter: filter(sites),
                    bucket: TimeBucket::Day as i32,
                    min_position: 0,
                },
                token,
            ))
            .await
            .expect("throughput")
            .into_inner(),
        lead_times: client
            .get_lead_times(authed(
                GetLeadTimesRequest {
                    filter: filter(sites),
                    grouping,
                    min_position: 0,
                },
                token,
            ))
            .await
            .expect("lead times")
            .into_inner(),
        sla: client
            .get_sla_report(authed(
                GetSlaReportRequest {
                    filter: filter(sites),
                    grouping,
                    min_position: 0,
                },
                token,
            ))
            .await
            .expect("sla")
            .into_inner(),
        satisfaction: client
            .get_satisfaction(authed(
                GetSatisfactionRequest {
                    filter: filter(sites),
                    grouping,
                    min_position: 0,
                },
                token,
            ))
            .await
            .expect("satisfaction")
            .into_inner(),
        backlog: client
            .get_backlog(authed(
                GetBacklogRequest {
                    filter: filter(sites),
                    grouping,
                    min_position: 0,
                },
                token,
            ))
            .await
            .expect("backlog")
            .into_inner(),
    }
}

/// insight's per-site reports equal each node's, and its province totals the sums.
async fn assert_insight_equals_the_nodes(
    insight: &InsightProcess,
    a: &Node,
    b: &Node,
    manager: &str,
) {
    // Per site: each report of insight for one site equals that site's node's report.
    for (node, site) in [(a, SITE_A), (b, SITE_B)] {
        let from_node = reports(&node.channel, manager, &[site], false).await;
        let from_insight = reports(&insight.channel, manager, &[site], false).await;
        assert_eq!(
            from_insight, from_node,
            "insight's figures for {site} differ from {}'s",
            node.node_id
        );
    }
    // Grouped by site: one row per node.
    let grouped = reports(&insight.channel, manager, &[SITE_A, SITE_B], true).await;
    for (index, (node, site)) in [(a, SITE_A), (b, SITE_B)].into_iter().enumerate() {
        let own = reports(&node.channel, manager, &[site], true).await;
        assert_eq!(
            grouped.lead_times.rows[index], own.lead_times.rows[0],
            "lead times of {site}"
        );
        assert_eq!(grouped.sla.rows[index], own.sla.rows[0], "sla of {site}");
        assert_eq!(
            grouped.satisfaction.rows[index], own.satisfaction.rows[0],
            "satisfaction of {site}"
        );
        assert_eq!(
            grouped.backlog.rows[index], own.backlog.rows[0],
            "backlog of {site}"
        );
    }
    // Province-wide: the sums of the nodes' own totals.
    let province = reports(&insight.channel, manager, &[], false).await;
    let (ra, rb) = (
        reports(&a.channel, manager, &[], false).await,
        reports(&b.channel, manager, &[], false).await,
    );
    let (ta, tb, tp) = (
        ra.throughput.total.unwrap(),
        rb.throughput.total.unwrap(),
        province.throughput.total.unwrap(),
    );
    assert_eq!(tp.submitted, ta.submitted + tb.submitted, "submitted");
    assert_eq!(tp.accepted, ta.accepted + tb.accepted, "accepted");
    assert_eq!(tp.fulfilled, ta.fulfilled + tb.fulfilled, "fulfilled");
    assert_eq!(
        tp.ended_without_service,
        ta.ended_without_service + tb.ended_without_service,
        "refused"
    );
    let (sa, sb, sp) = (
        ra.sla.total.unwrap(),
        rb.sla.total.unwrap(),
        province.sla.total.unwrap(),
    );
    assert_eq!(
        sp.deadlines_due,
        sa.deadlines_due + sb.deadlines_due,
        "deadlines due"
    );
    assert_eq!(
        sp.deadlines_met,
        sa.deadlines_met + sb.deadlines_met,
        "deadlines met"
    );
    assert_eq!(
        sp.warnings + sp.yellow_cards + sp.red_cards,
        sa.warnings + sa.yellow_cards + sa.red_cards + sb.warnings + sb.yellow_cards + sb.red_cards
    );
    let (qa, qb, qp) = (
        ra.satisfaction.total.unwrap(),
        rb.satisfaction.total.unwrap(),
        province.satisfaction.total.unwrap(),
    );
    assert_eq!(qp.rated, qa.rated + qb.rated, "rated");
    for (index, grade) in qp.grades.iter().enumerate() {
        assert_eq!(
            grade.count,
            qa.grades[index].count + qb.grades[index].count,
            "grade {}",
            grade.grade
        );
    }
    assert_eq!(
        qp.remediation.unwrap().open,
        qa.remediation.unwrap().open + qb.remediation.unwrap().open,
        "open remediations"
    );
    let (ba, bb, bp) = (
        ra.backlog.total.unwrap(),
        rb.backlog.total.unwrap(),
        province.backlog.total.unwrap(),
    );
    assert_eq!(bp.open, ba.open + bb.open, "open requests");
    let cells = |row: &BacklogRow| -> u64 { row.cells.iter().map(|c| c.count).sum() };
    assert_eq!(cells(&bp), cells(&ba) + cells(&bb), "backlog cells");
}

/// Waits until insight applied every event of both nodes' logs.
async fn wait_for_heads(insight: &InsightProcess, a: &Node, b: &Node) {
    let head_a = a.log_events().await.len() as u64;
    let head_b = b.log_events().await.len() as u64;
    wait_until("insight to reach both nodes' heads", 60, || {
        let positions = insight.node_positions();
        positions.get("node-a") == Some(&head_a) && positions.get("node-b") == Some(&head_b)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insight_figures_are_the_sum_of_two_nodes_also_after_a_kill9() {
    let nats = NatsServer::start();
    let url = nats.url();
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token-secret");
    write_secret(&secret_file);
    let a = Node::start(&dir.path().join("node-a"), &secret_file, "node-a", &url).await;
    let b = Node::start(&dir.path().join("node-b"), &secret_file, "node-b", &url).await;
    let insight_dir = dir.path().join("insight");
    let mut insight = InsightProcess::start(&insight_dir, &secret_file, &url).await;
    let manager = token(&a.secret(), Role::Manager, "province-manager", &["*"]);

    tokio::join!(drive(&a, SITE_A, 0, 40), drive(&b, SITE_B, 0, 30));
    wait_for_heads(&insight, &a, &b).await;
    assert_insight_equals_the_nodes(&insight, &a, &b, &manager).await;
    let first = reports(&insight.channel, &manager, &[], false).await;
    assert_eq!(
        first.throughput.total.as_ref().unwrap().submitted,
        70,
        "40 + 30 requests"
    );

    // SIGKILL insight while both nodes keep working, then start it again on its store.
    let applied_before = metric(&insight.metrics(), "anju_insight_applied_total").unwrap();
    let work = async {
        tokio::join!(drive(&a, SITE_A, 40, 30), drive(&b, SITE_B, 30, 30));
    };
    let kill = async {
        wait_until("insight to apply part of the new work", 60, || {
            metric(&insight.metrics(), "anju_insight_applied_total").unwrap_or(0)
                > applied_before + 20
        })
        .await;
        insight.process.kill9();
    };
    tokio::join!(work, kill);
    let mut insight = InsightProcess::start(&insight_dir, &secret_file, &url).await;
    drive(&b, SITE_B, 60, 5).await;
    wait_for_heads(&insight, &a, &b).await;
    assert_insight_equals_the_nodes(&insight, &a, &b, &manager).await;
    let after = reports(&insight.channel, &manager, &[], false).await;
    assert_eq!(
        after.throughput.total.as_ref().unwrap().submitted,
        135,
        "70 + 60 + 5 requests, none twice"
    );

    // insight answers as the nodes do: the same tokens, the same refusals.
    let mut client = ManagerServiceClient::new(insight.channel.clone());
    let refused = client
        .get_backlog(GetBacklogRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let caseworker = token(&a.secret(), Role::Caseworker, "cw", &[SITE_A]);
    let refused = client
        .get_backlog(authed(GetBacklogRequest::default(), &caseworker))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let site_manager = token(&a.secret(), Role::Manager, "site-manager", &[SITE_A]);
    let refused = client
        .get_backlog(authed(
            GetBacklogRequest {
                filter: filter(&[SITE_B]),
                ..Default::default()
            },
            &site_manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let refused = client
        .get_backlog(authed(
            GetBacklogRequest {
                min_position: 5,
                ..Default::default()
            },
            &manager,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert!(
        refused.message().contains("min_position"),
        "{}",
        refused.message()
    );

    // A message that is not an anju event is set aside and counted; insight goes on.
    let client = async_nats::connect(&url).await.unwrap();
    async_nats::jetstream::new(client)
        .publish(
            "anju.events.node-x.site-x.community.Garbage",
            "not json".into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    drive(&a, SITE_A, 70, 1).await;
    wait_for_heads(&insight, &a, &b).await;
    let metrics = insight.metrics();
    assert_eq!(
        metric(&metrics, "anju_insight_set_aside_total"),
        Some(1),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "anju_insight_connected"),
        Some(1),
        "{metrics}"
    );
    assert!(
        insight.process.output().contains("set aside"),
        "{}",
        insight.process.output()
    );

    // SIGTERM: a clean stop with exit code 0.
    assert_eq!(
        insight.process.terminate(),
        Some(0),
        "{}",
        insight.process.output()
    );
    // The test's phones are 1380013NNNN; a bare "13800" also turns up inside other
    // numbers (instants, durations), so look for an 11-digit run of that form.
    let output = insight.process.output();
    let phones: Vec<&str> = output
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| run.len() == 11 && run.starts_with("1380013"))
        .collect();
    assert!(phones.is_empty(), "a phone number reached insight's log");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
