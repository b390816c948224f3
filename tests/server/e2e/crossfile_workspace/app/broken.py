def survives(a):
    return a

if x ==:
    pass

def also_survives(b):
    return b
