/* Unit tests for common/dxb_keys: key generation and derivation, the key file
 * formats, and the refusals that protect secret keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sodium.h>

#include "common/dxb_keys.h"
#include "common/dxb_util.h"

typedef struct {
    char dir[64];
    char pub[128];
    char secret[128];
} keys_fixture_t;

static int
s_setup(void **state)
{
    keys_fixture_t *fx = calloc(1, sizeof(*fx));
    if (fx == NULL) {
        return -1;
    }
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/dxb-test-keys-XXXXXX");
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    snprintf(fx->pub, sizeof(fx->pub), "%s/keys/sq.hrss.pub", fx->dir);
    snprintf(fx->secret, sizeof(fx->secret), "%s/keys/sq.hrss.secret", fx->dir);
    *state = fx;
    return 0;
}

static int
s_teardown(void **state)
{
    keys_fixture_t *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    int rc = system(cmd);
    free(fx);
    return rc == 0 ? 0 : -1;
}

static void
s_write(const char *path, const char *text, unsigned mode)
{
    unlink(path);
    assert_int_equal(dxb_write_file_atomic(path, text, strlen(text), mode), DXB_OK);
    assert_int_equal(chmod(path, mode), 0);
}

/* Saves a fresh key pair for sq.hrss into fx->dir/keys. */
static void
s_save_fresh(keys_fixture_t *fx, dxb_keypair_t *kp)
{
    char keydir[128];
    snprintf(keydir, sizeof(keydir), "%s/keys", fx->dir);
    assert_int_equal(dxb_keys_generate("sq.hrss", kp), DXB_OK);
    assert_int_equal(dxb_keys_save(kp, keydir), DXB_OK);
}

static void
test_keys_generate_derives_box_keys_that_work_with_crypto_box(void **state)
{
    (void)state;
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("sq.hrss", &kp), DXB_OK);
    assert_string_equal(kp.node, "sq.hrss");

    uint8_t box_pk[32];
    assert_int_equal(dxb_keys_box_from_sign(kp.sign_pk, box_pk), DXB_OK);
    assert_memory_equal(box_pk, kp.box_pk, 32);
    uint8_t from_sk[32];
    assert_int_equal(crypto_scalarmult_base(from_sk, kp.box_sk), 0);
    assert_memory_equal(from_sk, kp.box_pk, 32);

    const uint8_t secret[32] = "content key for the recipient..";
    uint8_t sealed[crypto_box_SEALBYTES + 32];
    uint8_t opened[32];
    assert_int_equal(crypto_box_seal(sealed, secret, 32, box_pk), 0);
    assert_int_equal(crypto_box_seal_open(opened, sealed, sizeof(sealed), kp.box_pk, kp.box_sk),
                     0);
    assert_memory_equal(opened, secret, 32);

    dxb_keypair_t other;
    assert_int_equal(dxb_keys_generate("sq.hrss", &other), DXB_OK);
    assert_memory_not_equal(other.sign_pk, kp.sign_pk, 32);
}

static void
test_keys_generate_refuses_invalid_node_id(void **state)
{
    (void)state;
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("../etc/passwd", &kp), DXB_EINVAL);
    assert_int_equal(dxb_keys_generate("", &kp), DXB_EINVAL);
    assert_int_equal(dxb_keys_generate("Upper", &kp), DXB_EINVAL);
}

static void
test_keys_save_then_load_round_trips(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    s_save_fresh(fx, &kp);

    struct stat st;
    assert_int_equal(stat(fx->secret, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    char keydir[128];
    snprintf(keydir, sizeof(keydir), "%s/keys", fx->dir);
    assert_int_equal(stat(keydir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);

    dxb_keypair_t loaded;
    char err[256] = "";
    assert_int_equal(dxb_keys_load_secret(fx->secret, &loaded, err, sizeof(err)), DXB_OK);
    assert_string_equal(loaded.node, "sq.hrss");
    assert_memory_equal(loaded.sign_pk, kp.sign_pk, 32);
    assert_memory_equal(loaded.sign_sk, kp.sign_sk, 64);
    assert_memory_equal(loaded.box_pk, kp.box_pk, 32);
    assert_memory_equal(loaded.box_sk, kp.box_sk, 32);

    char node[65] = "";
    uint8_t pk[32];
    assert_int_equal(dxb_keys_load_public(fx->pub, node, pk, err, sizeof(err)), DXB_OK);
    assert_string_equal(node, "sq.hrss");
    assert_memory_equal(pk, kp.sign_pk, 32);
}

static void
test_keys_files_have_the_documented_format(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    s_save_fresh(fx, &kp);

    char z85[DXB_Z85_KEY_LEN + 1];
    char want[128];
    uint8_t *text = NULL;
    size_t len = 0;
    dxb_keys_z85(kp.sign_pk, z85);
    snprintf(want, sizeof(want), "node: sq.hrss\nsuite: 1\npublic_key: %s\n", z85);
    assert_int_equal(dxb_read_file(fx->pub, 4096, &text, &len), DXB_OK);
    assert_string_equal((char *)text, want);
    free(text);

    uint8_t seed[32];
    crypto_sign_ed25519_sk_to_seed(seed, kp.sign_sk);
    dxb_keys_z85(seed, z85);
    snprintf(want, sizeof(want), "node: sq.hrss\nsuite: 1\nsecret_seed: %s\n", z85);
    assert_int_equal(dxb_read_file(fx->secret, 4096, &text, &len), DXB_OK);
    assert_string_equal((char *)text, want);
    free(text);
}

static void
test_keys_secret_readable_by_group_or_others_is_refused(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    s_save_fresh(fx, &kp);
    char err[256] = "";
    assert_int_equal(chmod(fx->secret, 0644), 0);
    assert_int_equal(dxb_keys_load_secret(fx->secret, &kp, err, sizeof(err)), DXB_EDENIED);
    char want[256];
    snprintf(want, sizeof(want), "%s: mode 0644 gives group or others access; run chmod 600",
             fx->secret);
    assert_string_equal(err, want);
    assert_int_equal(chmod(fx->secret, 0620), 0);
    assert_int_equal(dxb_keys_load_secret(fx->secret, &kp, err, sizeof(err)), DXB_EDENIED);
    assert_int_equal(chmod(fx->secret, 0400), 0);
    assert_int_equal(dxb_keys_load_secret(fx->secret, &kp, err, sizeof(err)), DXB_OK);
}

static void
test_keys_secret_through_symlink_is_refused(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    s_save_fresh(fx, &kp);
    char link_path[160];
    snprintf(link_path, sizeof(link_path), "%s/link.secret", fx->dir);
    assert_int_equal(symlink(fx->secret, link_path), 0);
    char err[256] = "";
    assert_int_equal(dxb_keys_load_secret(link_path, &kp, err, sizeof(err)), DXB_EDENIED);
    assert_non_null(strstr(err, "symbolic link"));

    /* A public key is not a secret: a symlinked one is fine. */
    char pub_link[160];
    char node[65];
    uint8_t pk[32];
    snprintf(pub_link, sizeof(pub_link), "%s/link.pub", fx->dir);
    assert_int_equal(symlink(fx->pub, pub_link), 0);
    assert_int_equal(dxb_keys_load_public(pub_link, node, pk, err, sizeof(err)), DXB_OK);
}

static void
test_keys_save_refuses_to_overwrite(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    s_save_fresh(fx, &kp);
    char keydir[128];
    snprintf(keydir, sizeof(keydir), "%s/keys", fx->dir);
    dxb_keypair_t other;
    assert_int_equal(dxb_keys_generate("sq.hrss", &other), DXB_OK);
    assert_int_equal(dxb_keys_save(&other, keydir), DXB_EEXIST);

    /* The original secret is untouched. */
    dxb_keypair_t loaded;
    char err[256];
    assert_int_equal(dxb_keys_load_secret(fx->secret, &loaded, err, sizeof(err)), DXB_OK);
    assert_memory_equal(loaded.sign_pk, kp.sign_pk, 32);

    /* Only the public file left over also blocks a save. */
    assert_int_equal(unlink(fx->secret), 0);
    assert_int_equal(dxb_keys_save(&other, keydir), DXB_EEXIST);
}

static void
test_keys_save_refuses_a_planted_tmp_file(void **state)
{
    keys_fixture_t *fx = *state;
    char keydir[128];
    char tmp[160];
    snprintf(keydir, sizeof(keydir), "%s/keys", fx->dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", fx->secret);
    assert_int_equal(dxb_mkdir_p(keydir, 0700), DXB_OK);
    s_write(tmp, "", 0666);
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("sq.hrss", &kp), DXB_OK);
    assert_int_equal(dxb_keys_save(&kp, keydir), DXB_EEXIST);
    struct stat st;
    assert_int_not_equal(stat(fx->secret, &st), 0);
}

static void
test_keys_load_reports_missing_and_malformed_files(void **state)
{
    keys_fixture_t *fx = *state;
    static const struct {
        const char *text;
        const char *reason;
    } cases[] = {
        {"node: sq.hrss\nsuite: 1\n", "missing field 'secret_seed'"},
        {"node: sq.hrss\nsuite: 2\nsecret_seed: 0000000000000000000000000000000000000000\n",
         "unsupported suite '2' (expected 1)"},
        {"node: sq.hrss\nnode: x\n", "line 2: duplicate field 'node'"},
        {"node: sq.hrss\ncolour: blue\n", "line 2: unknown field 'colour'"},
        {"node sq.hrss\n", "line 1: expected 'name: value'"},
        {"node: ../x\nsuite: 1\nsecret_seed: 0000000000000000000000000000000000000000\n",
         "invalid node id"},
        {"node: a\nsuite: 1\nsecret_seed: 00000\n", "secret_seed is not 40 Z85 characters"},
        {"node: a\nsuite: 1\nsecret_seed: 000000000000000000000000000000000000000~\n",
         "secret_seed is not 40 Z85 characters"},
    };
    char path[160];
    char err[256];
    char want[256];
    dxb_keypair_t kp;
    snprintf(path, sizeof(path), "%s/bad.secret", fx->dir);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        s_write(path, cases[i].text, 0600);
        assert_int_equal(dxb_keys_load_secret(path, &kp, err, sizeof(err)), DXB_ECONFIG);
        snprintf(want, sizeof(want), "%s: %s", path, cases[i].reason);
        assert_string_equal(err, want);
    }
    snprintf(path, sizeof(path), "%s/none.secret", fx->dir);
    assert_int_equal(dxb_keys_load_secret(path, &kp, err, sizeof(err)), DXB_ENOTFOUND);
    assert_int_equal(dxb_keys_load_secret(fx->dir, &kp, err, sizeof(err)), DXB_ECONFIG);
}

static void
test_keys_files_allow_comments_and_crlf(void **state)
{
    keys_fixture_t *fx = *state;
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("sq.hrss", &kp), DXB_OK);
    uint8_t seed[32];
    char z85[DXB_Z85_KEY_LEN + 1];
    char text[256];
    crypto_sign_ed25519_sk_to_seed(seed, kp.sign_sk);
    dxb_keys_z85(seed, z85);
    snprintf(text, sizeof(text),
             "# dxb secret key\r\nnode: sq.hrss\r\n\r\nsuite: 1\r\nsecret_seed: %s\r\n", z85);
    char path[160];
    snprintf(path, sizeof(path), "%s/crlf.secret", fx->dir);
    s_write(path, text, 0600);
    dxb_keypair_t loaded;
    char err[256];
    assert_int_equal(dxb_keys_load_secret(path, &loaded, err, sizeof(err)), DXB_OK);
    assert_memory_equal(loaded.sign_sk, kp.sign_sk, 64);
}

static void
test_keys_parse_public_rejects_bad_z85(void **state)
{
    (void)state;
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("sq.hrss", &kp), DXB_OK);
    char z85[DXB_Z85_KEY_LEN + 1];
    dxb_keys_z85(kp.sign_pk, z85);
    uint8_t pk[32];
    assert_int_equal(dxb_keys_parse_public(z85, pk), DXB_OK);
    assert_memory_equal(pk, kp.sign_pk, 32);

    char bad[64];
    memcpy(bad, z85, 41);
    bad[39] = '\0';
    assert_int_equal(dxb_keys_parse_public(bad, pk), DXB_EINVAL);
    snprintf(bad, sizeof(bad), "%s0", z85);
    assert_int_equal(dxb_keys_parse_public(bad, pk), DXB_EINVAL);
    memcpy(bad, z85, 41);
    bad[7] = ',';
    assert_int_equal(dxb_keys_parse_public(bad, pk), DXB_EINVAL);
    bad[7] = ' ';
    assert_int_equal(dxb_keys_parse_public(bad, pk), DXB_EINVAL);
    /* "#####" is 85^5 - 1, more than 32 bits: it must not wrap around. */
    memcpy(bad, z85, 41);
    memcpy(bad, "#####", 5);
    assert_int_equal(dxb_keys_parse_public(bad, pk), DXB_EINVAL);
    assert_int_equal(dxb_keys_parse_public("", pk), DXB_EINVAL);
    assert_int_equal(dxb_keys_parse_public(NULL, pk), DXB_EINVAL);
}

static void
test_keys_parse_public_rejects_invalid_points(void **state)
{
    (void)state;
    uint8_t point[32] = {0};
    char z85[DXB_Z85_KEY_LEN + 1];
    uint8_t pk[32];
    uint8_t box[32];
    /* y = 0 is a point of small order, y = 1 the identity. */
    dxb_keys_z85(point, z85);
    assert_int_equal(dxb_keys_parse_public(z85, pk), DXB_EINVAL);
    assert_int_equal(dxb_keys_box_from_sign(point, box), DXB_EINVAL);
    point[0] = 1;
    dxb_keys_z85(point, z85);
    assert_int_equal(dxb_keys_parse_public(z85, pk), DXB_EINVAL);

    /* A public file carrying such a key is a config error. */
    keys_fixture_t *fx = NULL;
    assert_int_equal(s_setup((void **)&fx), 0);
    char path[160];
    char text[128];
    snprintf(path, sizeof(path), "%s/bad.pub", fx->dir);
    snprintf(text, sizeof(text), "node: a\nsuite: 1\npublic_key: %s\n", z85);
    s_write(path, text, 0644);
    char node[65];
    char err[256];
    assert_int_equal(dxb_keys_load_public(path, node, pk, err, sizeof(err)), DXB_ECONFIG);
    assert_non_null(strstr(err, "not a valid Z85 Ed25519 key"));
    assert_int_equal(s_teardown((void **)&fx), 0);
}

static void
test_keys_z85_matches_the_zeromq_reference_vector(void **state)
{
    (void)state;
    /* ZeroMQ RFC 32: 86 4F D2 6F B5 59 F7 5B encodes as "HelloWorld". */
    static const uint8_t hello[8] = {0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B};
    uint8_t key[32];
    for (int i = 0; i < 4; i++) {
        memcpy(key + 8 * i, hello, 8);
    }
    char z85[DXB_Z85_KEY_LEN + 1];
    dxb_keys_z85(key, z85);
    assert_string_equal(z85, "HelloWorldHelloWorldHelloWorldHelloWorld");
}

static void
test_keys_wipe_zeroes_only_the_secrets(void **state)
{
    (void)state;
    dxb_keypair_t kp;
    assert_int_equal(dxb_keys_generate("sq.hrss", &kp), DXB_OK);
    uint8_t pk[32];
    memcpy(pk, kp.sign_pk, 32);
    dxb_keys_wipe(&kp);
    assert_true(sodium_is_zero(kp.sign_sk, sizeof(kp.sign_sk)));
    assert_true(sodium_is_zero(kp.box_sk, sizeof(kp.box_sk)));
    assert_memory_equal(kp.sign_pk, pk, 32);
}

int
main(void)
{
    if (sodium_init() < 0) {
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_generate_derives_box_keys_that_work_with_crypto_box),
        cmocka_unit_test(test_keys_generate_refuses_invalid_node_id),
        cmocka_unit_test_setup_teardown(test_keys_save_then_load_round_trips, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_files_have_the_documented_format, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_secret_readable_by_group_or_others_is_refused,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_secret_through_symlink_is_refused, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_save_refuses_to_overwrite, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_save_refuses_a_planted_tmp_file, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_load_reports_missing_and_malformed_files,
                                        s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_files_allow_comments_and_crlf, s_setup,
                                        s_teardown),
        cmocka_unit_test(test_keys_parse_public_rejects_bad_z85),
        cmocka_unit_test(test_keys_parse_public_rejects_invalid_points),
        cmocka_unit_test(test_keys_z85_matches_the_zeromq_reference_vector),
        cmocka_unit_test(test_keys_wipe_zeroes_only_the_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
