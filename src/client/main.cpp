#include <cstdio>
int main() { std::puts("imgate client: not built yet"); return 0; }
