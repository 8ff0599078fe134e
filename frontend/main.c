/* keyless-frontend: placeholder entry point until the frontend lands (issue 5). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("keyless-frontend %s\n", KL_VERSION);
        return 0;
    }
    printf("usage: keyless-frontend [--help] [--version]\n"
           "The TLS terminator is not built yet; this binary only reports its version.\n");
    return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
