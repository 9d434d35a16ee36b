/* gemmatrain tokenize: JSONL on stdin -> JSONL on stdout, through a Gemma tokenizer.
 *   encode: {"text": ...}  ->  {"text": ..., "ids": [...]}
 *   decode: {"ids": [...]} ->  {"ids": [...], "text": ...}
 * Output strings are escaped as JavaScript's JSON.stringify does, so re-encoding a reference
 * file such as tests/fixtures/vectors.jsonl gives it back byte for byte. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "cli/args.h"
#include "cli/cli.h"
#include "train/loader.h"
#include "util/err.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gemmatrain tokenize --tokenizer PATH [--match-special] [--add-special] < in.jsonl\n"
            "       gemmatrain tokenize --tokenizer PATH --decode [--skip-special] < in.jsonl\n"
            "       gemmatrain tokenize --tokenizer PATH --write-spm OUT\n"
            "\n"
            "Reads one JSON object a line on stdin: {\"text\": ...} to encode, {\"ids\": [...]} with\n"
            "--decode; writes {\"text\": ..., \"ids\": [...]} (or {\"ids\": ..., \"text\": ...}) lines.\n"
            "\n"
            "options:\n"
            "  --tokenizer PATH  tokenizer.json, a SentencePiece model (.spm/.model), or a GGUF model file\n"
            "                    (its tokenizer.ggml.* vocabulary; chunk files comma-separated)\n"
            "  --match-special   match control-token text (\"<start_of_turn>\") as the token; by default\n"
            "                    it is encoded as plain text\n"
            "  --add-special     add BOS before and EOS after each text's ids\n"
            "  --decode          ids to text\n"
            "  --skip-special    with --decode: drop control tokens (<bos>, <eos>, <pad>, ...)\n"
            "  --write-spm OUT   write the vocabulary as a SentencePiece model proto and exit\n");
}

/* JSON string with JSON.stringify's escapes: \" \\ \b \f \n \r \t, other controls as \u00xx. */
static void put_json_string(FILE *f, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    putc('"', f);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        fwrite(s + run, 1, i - run, f);
        run = i + 1;
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default: fprintf(f, "\\u00%c%c", hex[c >> 4], hex[c & 15]); break;
        }
    }
    fwrite(s + run, 1, n - run, f);
    putc('"', f);
}

static void put_ids(FILE *f, const int32_t *ids, size_t n) {
    putc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    putc(']', f);
}

static int encode_line(const gt_tokenizer *tok, json_t *obj, bool match_special, bool add_special,
                       gt_ids *ids, char *why, size_t whyn) {
    json_t *text = json_object_get(obj, "text");
    if (!json_is_string(text)) return snprintf(why, whyn, "expected a string \"text\""), -1;
    const char *s = json_string_value(text);
    size_t n = json_string_length(text);
    ids->n = 0;
    if (add_special && gt_ids_push(ids, gt_tok_bos(tok))) return snprintf(why, whyn, "out of memory"), -1;
    if (gt_tok_encode(tok, s, n, match_special, ids, why, whyn)) return -1;
    if (add_special && gt_ids_push(ids, gt_tok_eos(tok))) return snprintf(why, whyn, "out of memory"), -1;
    fputs("{\"text\":", stdout);
    put_json_string(stdout, s, n);
    fputs(",\"ids\":", stdout);
    put_ids(stdout, ids->ids, ids->n);
    fputs("}\n", stdout);
    return 0;
}

static int decode_line(const gt_tokenizer *tok, json_t *obj, bool skip_special, gt_ids *ids, char *why,
                       size_t whyn) {
    json_t *arr = json_object_get(obj, "ids");
    if (!json_is_array(arr)) return snprintf(why, whyn, "expected an array \"ids\""), -1;
    ids->n = 0;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *v = json_array_get(arr, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= gt_tok_vocab_size(tok))
            return snprintf(why, whyn, "ids[%zu] is not a token id in [0, %d)", i, gt_tok_vocab_size(tok)),
                   -1;
        if (gt_ids_push(ids, (int32_t)json_integer_value(v))) return snprintf(why, whyn, "out of memory"), -1;
    }
    char *text;
    size_t n;
    if (gt_tok_decode(tok, ids->ids, ids->n, skip_special, &text, &n, why, whyn)) return -1;
    fputs("{\"ids\":", stdout);
    put_ids(stdout, ids->ids, ids->n);
    fputs(",\"text\":", stdout);
    put_json_string(stdout, text, n);
    fputs("}\n", stdout);
    free(text);
    return 0;
}

typedef struct tok_args {
    const char *path, *spm_out; /* --tokenizer, --write-spm */
    bool match_special, add_special, decode, skip_special;
} tok_args;

/* stdin's JSONL lines, encoded or decoded to stdout, up to the first bad one (named by line):
 * 0, or 1 with the message printed. */
static int transform(const gt_tokenizer *tok, const tok_args *o) {
    char *line = NULL;
    size_t cap = 0, lineno = 0;
    ssize_t len;
    gt_ids ids = {0};
    int rc = 0;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t n = (size_t)len;
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        size_t k = 0;
        while (k < n && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k == n) continue; /* blank line */
        json_error_t je;
        json_t *obj = json_loadb(line, n, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &je);
        char why[512];
        if (!obj) {
            fprintf(stderr, "<stdin>:%zu: invalid JSON at column %d: %s\n", lineno, je.column, gt_err_printable(je.text));
            rc = 1;
            break;
        }
        int bad = !json_is_object(obj) ? (snprintf(why, sizeof why, "expected a JSON object"), -1)
                  : o->decode ? decode_line(tok, obj, o->skip_special, &ids, why, sizeof why)
                              : encode_line(tok, obj, o->match_special, o->add_special, &ids, why, sizeof why);
        json_decref(obj);
        if (bad) {
            fprintf(stderr, "<stdin>:%zu: %s\n", lineno, why);
            rc = 1;
            break;
        }
    }
    free(line);
    gt_ids_free(&ids);
    return rc;
}

/* 0: run with *a; else the exit status (2 for a usage error, its message printed) plus one. */
static int parse_args(int argc, char **argv, tok_args *a) {
    enum { O_TOKENIZER = 256, O_WRITE_SPM, O_MATCH, O_ADD, O_DECODE, O_SKIP };
    static const struct option opts[] = {
        {"tokenizer", required_argument, NULL, O_TOKENIZER},
        {"write-spm", required_argument, NULL, O_WRITE_SPM},
        {"match-special", no_argument, NULL, O_MATCH},
        {"add-special", no_argument, NULL, O_ADD},
        {"decode", no_argument, NULL, O_DECODE},
        {"skip-special", no_argument, NULL, O_SKIP},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *a = (tok_args){0};
    char nb[8];
    cli_getopt_reset();
    int o;
    /* "-": arguments come back in order (1), so the first stray one is the one named */
    while ((o = cli_getopt(argc, argv, "-:h", opts)) != -1) {
        switch (o) {
        case 'h': usage(stdout); return 1;
        case O_TOKENIZER: a->path = optarg; break;
        case O_WRITE_SPM: a->spm_out = optarg; break;
        case O_MATCH: a->match_special = true; break;
        case O_ADD: a->add_special = true; break;
        case O_DECODE: a->decode = true; break;
        case O_SKIP: a->skip_special = true; break;
        case ':':
            fprintf(stderr, "gemmatrain tokenize: %s needs a value\n", cli_rejected(argv, nb, sizeof nb));
            return 3;
        default:
            fprintf(stderr, "gemmatrain tokenize: unknown option '%s' (see --help)\n",
                    o == 1 ? optarg : cli_rejected(argv, nb, sizeof nb));
            return 3;
        }
    }
    if (optind < argc) { /* after "--" */
        fprintf(stderr, "gemmatrain tokenize: unknown option '%s' (see --help)\n", argv[optind]);
        return 3;
    }
    if (!a->path) {
        fprintf(stderr, "gemmatrain tokenize: --tokenizer PATH is required (see --help)\n");
        return 3;
    }
    if (a->decode && (a->match_special || a->add_special)) {
        fprintf(stderr,
                "gemmatrain tokenize: --match-special and --add-special apply to encoding, not --decode\n");
        return 3;
    }
    if (!a->decode && a->skip_special) {
        fprintf(stderr, "gemmatrain tokenize: --skip-special applies to --decode only\n");
        return 3;
    }
    return 0;
}

int cli_tokenize(int argc, char **argv) {
    tok_args o;
    int rc = parse_args(argc, argv, &o);
    if (rc) return rc - 1;
    char err[512];
    gt_tokenizer *tok;
    if (gt_tok_load(o.path, &tok, err, sizeof err)) {
        fprintf(stderr, "gemmatrain tokenize: %s\n", err);
        return 1;
    }
    if (o.spm_out) {
        rc = gt_tok_save_spm(tok, o.spm_out, err, sizeof err);
        if (rc) fprintf(stderr, "gemmatrain tokenize: %s\n", err);
        gt_tok_free(tok);
        return rc ? 1 : 0;
    }
    if (o.add_special && (gt_tok_bos(tok) < 0 || gt_tok_eos(tok) < 0)) {
        fprintf(stderr, "gemmatrain tokenize: --add-special: %s has no %s piece\n", o.path,
                gt_tok_bos(tok) < 0 ? "BOS" : "EOS");
        gt_tok_free(tok);
        return 1;
    }
    rc = transform(tok, &o);
    if (!rc && ferror(stdin)) {
        fprintf(stderr, "gemmatrain tokenize: error reading stdin\n");
        rc = 1;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "gemmatrain tokenize: error writing stdout\n");
        rc = 1;
    }
    gt_tok_free(tok);
    return rc;
}
