/* dxb-agent: the front-end exchange node (前置机). main() is the start-up
 * checklist: signals, arguments, config, sodium, keys, store, spool folders,
 * inbox recovery, API socket, ready, run, tear down in reverse. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/signalfd.h>
#include <string.h>
#include <unistd.h>
#include <czmq.h>

#ifdef DXB_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "agents/agt_agent.h"
#include "common/dxb_daemon.h"
#include "common/dxb_log.h"
#include "common/dxb_util.h"

#define TICK_MS 50

static void
s_usage(FILE *out)
{
    fprintf(out,
            "usage: dxb-agent --config FILE [--check-config] [--log-level LEVEL]\n"
            "\n"
            "The dxb front-end exchange node: picks up files renamed into\n"
            "<data_dir>/outbox/<dataset>/ and API publishes, encrypts them end to end,\n"
            "keeps them in its LMDB outbox until the broker acknowledged them, and\n"
            "writes received messages into <data_dir>/inbox/<dataset>/ (with a .dxbmeta\n"
            "sidecar) or hands them to applications on its API socket.\n"
            "\n"
            "  -c, --config FILE     agent configuration (see conf/agent.yaml)\n"
            "      --check-config    validate the configuration, print every error as\n"
            "                        FILE:LINE:COL, exit 0 when valid, 78 when not\n"
            "      --log-level L     error|warn|notice|info|debug (overrides the config)\n"
            "  -h, --help            this text\n"
            "  -V, --version         print the version\n"
            "\n"
            "Signals: SIGTERM/SIGINT stop cleanly. Exit codes: 0 ok, 1 runtime failure,\n"
            "64 usage, 78 configuration.\n");
}

static void
s_notify(const char *state)
{
#ifdef DXB_HAVE_SYSTEMD
    sd_notify(0, state);
#else
    (void)state;
#endif
}

static int
s_on_tick(zloop_t *loop, int timer_id, void *arg)
{
    agt_t *a = arg;
    uint64_t now = dxb_mono_ms();
    agt_link_tick(a);
    if (now - a->last_scan_mono >= a->cfg.scan_ms) {
        a->last_scan_mono = now;
        agt_spool_scan(a);
    }
    agt_api_push(a);
    static uint64_t last_sweep;
    if (now - last_sweep >= 10000) {
        last_sweep = now;
        agt_store_sweep(a);
        agt_xfer_sweep(a);
    }
#ifdef DXB_HAVE_SYSTEMD
    static uint64_t last_watchdog;
    uint64_t usec = 0;
    if (now - last_watchdog >= 1000 && sd_watchdog_enabled(0, &usec) > 0) {
        last_watchdog = now;
        sd_notify(0, "WATCHDOG=1");
    }
#endif
    (void)loop;
    (void)timer_id;
    return 0;
}

static int
s_on_signal(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    agt_t *a = arg;
    struct signalfd_siginfo si;
    if (read(a->sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si)) {
        return 0;
    }
    if (si.ssi_signo == SIGHUP) {
        dxb_log_notice("AGT-HUP", "SIGHUP ignored: restart the agent to apply config changes");
        return 0;
    }
    dxb_log_notice("AGT-STOP", "stopping on signal %u", si.ssi_signo);
    (void)loop;
    (void)item;
    return -1;
}

static dxb_err_t
s_start(agt_t *a)
{
    char errbuf[512];
    dxb_err_t err = dxb_keys_load_secret(a->cfg.key_path, &a->keys, errbuf, sizeof(errbuf));
    if (err) {
        dxb_log_error("AGT-KEY", "cannot load node key: %s", errbuf);
        return err;
    }
    if (strcmp(a->keys.node, a->cfg.id) != 0) {
        dxb_log_error("AGT-KEY", "key file belongs to node '%s', config says '%s'", a->keys.node,
                      a->cfg.id);
        return DXB_ECONFIG;
    }
    err = dxb_keys_box_from_sign(a->cfg.broker_sign_pk, a->broker_box_pk);
    if (err) {
        return err;
    }
    /* Spool ids are keyed with a value only this node can compute. */
    crypto_generichash(a->spool_id_key, 32, (const uint8_t *)"dxb-spool-id-1", 14, a->keys.sign_sk,
                       32);
    err = agt_store_open(a);
    if (!err) {
        err = agt_spool_prepare(a);
    }
    if (!err) {
        err = agt_xfer_init(a);
    }
    if (!err) {
        agt_spool_recover(a);
        a->ctx = zmq_ctx_new();
        err = agt_api_bind(a);
    }
    return err;
}

static void
s_stop(agt_t *a)
{
    agt_link_close(a);
    zloop_destroy(&a->loop);
    if (a->api != NULL) {
        zmq_close(a->api);
        if (strncmp(a->cfg.api_endpoint, "ipc://", 6) == 0) {
            unlink(a->cfg.api_endpoint + 6);
        }
    }
    if (a->ctx != NULL) {
        zmq_ctx_term(a->ctx);
    }
    agt_xfer_destroy(a);
    free(a->grants);
    dxb_store_destroy(&a->store);
    free(a->peers);
    msgpack_sbuffer_destroy(&a->sbuf);
    dxb_keys_wipe(&a->keys);
    sodium_memzero(a->spool_id_key, sizeof(a->spool_id_key));
    agt_cfg_free(&a->cfg);
}

static int
s_run(agt_t *a)
{
    a->loop = zloop_new();
    zmq_pollitem_t api_item = {.socket = a->api, .events = ZMQ_POLLIN};
    zmq_pollitem_t sig_item = {.fd = a->sigfd, .events = ZMQ_POLLIN};
    zloop_poller(a->loop, &api_item, agt_api_on_readable, a);
    zloop_poller(a->loop, &sig_item, s_on_signal, a);
    zloop_timer(a->loop, TICK_MS, 0, s_on_tick, a);
    zloop_set_nonstop(a->loop, true);
    agt_store_audit_now(a, "start", a->cfg.id, "ok", a->cfg.broker);
    s_notify("READY=1");
    dxb_log_notice("AGT-READY",
                   "agent ready node=%s broker=%s api=%s outbox=%llu peers=%zu sync=%s",
                   a->cfg.id, a->cfg.broker, a->cfg.api_endpoint,
                   (unsigned long long)agt_store_outbox_count(a), a->n_peers,
                   a->cfg.durable ? "durable" : "fast");
    agt_link_tick(a);
    zloop_start(a->loop);
    s_notify("STOPPING=1");
    if (a->dealer != NULL && a->link == AGT_LINK_UP) {
        msgpack_sbuffer_clear(&a->sbuf);
        if (dxb_msg_enc_bye(&a->sbuf, "agent stopping") == DXB_OK) {
            zmq_send(a->dealer, a->sbuf.data, a->sbuf.size, ZMQ_DONTWAIT);
        }
    }
    agt_store_audit_now(a, "stop", a->cfg.id, "ok", "signal");
    return 0;
}

int
main(int argc, char **argv)
{
    static agt_t agent;
    agt_t *a = &agent;
    a->sigfd = dxb_daemon_signals();
    dxb_daemon_args_t args;
    int rc = dxb_daemon_parse_args(argc, argv, "dxb-agent", s_usage, &args);
    if (rc >= 0) {
        return rc;
    }
    dxb_log_init("dxb-agent", DXB_LOG_INFO);
    /* libsodium's default generator makes one getrandom(2) call per request
     * (several per message); its internal ChaCha20 generator, seeded from the
     * kernel, makes none on the hot path. */
    randombytes_set_implementation(&randombytes_internal_implementation);
    if (sodium_init() < 0) {
        fprintf(stderr, "dxb-agent: libsodium failed to initialise\n");
        return 1;
    }
    char *errors = NULL;
    if (agt_cfg_load(args.cfg_path, &a->cfg, &errors) != DXB_OK) {
        fprintf(stderr, "%s", errors ? errors : "invalid configuration\n");
        free(errors);
        return DXB_EX_CONFIG;
    }
    if (args.check_only) {
        printf("%s: configuration ok (%zu datasets)\n", args.cfg_path, a->cfg.n_datasets);
        agt_cfg_free(&a->cfg);
        return 0;
    }
    dxb_log_init("dxb-agent", (dxb_log_level_t)(args.log_level >= 0 ? args.log_level
                                                                    : a->cfg.log_level));
    msgpack_sbuffer_init(&a->sbuf);
    rc = 1;
    dxb_err_t err = s_start(a);
    if (err) {
        dxb_log_error("AGT-START", "agent cannot start err=%s", dxb_strerror(err));
    } else {
        rc = s_run(a);
    }
    s_stop(a);
    close(a->sigfd);
    dxb_log_notice("AGT-EXIT", "agent stopped");
    return rc;
}
