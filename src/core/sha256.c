/* SHA-256 fingerprints through OpenSSL's EVP interface: a patch names its base model
 * by the digest of the unpatched file. */
#include "xorpatch/core.h"

#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

static void to_hex(const unsigned char *md, char hex[65])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
}

void xp_sha256_hex(const void *data, size_t len, char hex[65])
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    to_hex(md, hex);
}

int xp_sha256_file(const char *path, char hex[65], xp_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return xp_err_set(err, XP_EIO, "%s: cannot open: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx) {
        fclose(f);
        return xp_err_set(err, XP_ENOMEM, "%s: cannot allocate a digest context", path);
    }
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    static const size_t chunk = 1 << 20;
    unsigned char *buf = malloc(chunk);
    int rc = XP_OK;
    if (!buf) {
        rc = xp_err_set(err, XP_ENOMEM, "%s: cannot allocate a read buffer", path);
    } else {
        size_t n;
        while ((n = fread(buf, 1, chunk, f)) > 0)
            EVP_DigestUpdate(ctx, buf, n);
        if (ferror(f))
            rc = xp_err_set(err, XP_EIO, "%s: read error: %s", path, strerror(errno));
    }
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    free(buf);
    fclose(f);
    if (rc == XP_OK)
        to_hex(md, hex);
    return rc;
}
