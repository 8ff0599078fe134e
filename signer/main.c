/* keyless-signer: placeholder entry point until the signer lands (issue 3). */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("keyless-signer %s\n", KL_VERSION);
        return 0;
    }
    printf("usage: keyless-signer [--help] [--version]\n"
           "The PKCS#11 signing service is not built yet; this binary only reports its version.\n");
    return argc > 1 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
}
