#include <stdio.h>

int main(void)
{
    puts("junction " JUNCTION_VERSION);
    return 0;
}
