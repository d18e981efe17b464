#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "connector.h"

static int validate(int argc, char **argv)
{
    int i, failed = 0;
    char *errors;
    jn_connector_t *c;

    if (argc < 1) {
        fprintf(stderr, "usage: junction connector validate FILE...\n");
        return 2;
    }
    for (i = 0; i < argc; i++) {
        c = jn_connector_load_file(argv[i], &errors);
        if (c == NULL) {
            fputs(errors ? errors : "out of memory\n", stderr);
            free(errors);
            failed = 1;
            continue;
        }
        printf("%s: ok (%s %s, capabilities:", argv[i], c->provider_type, c->version);
        for (size_t k = 0; k < c->capabilities.count; k++)
            printf(" %s", c->capabilities.items[k]);
        printf(")\n");
        jn_connector_unref(c);
    }
    return failed ? 1 : 0;
}

int jn_cli_connector(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "validate") == 0)
        return validate(argc - 2, argv + 2);
    fprintf(stderr, "usage: junction connector validate FILE...\n");
    return 2;
}
